//! Typed views of a validated table's records (rules, endpoints, tenants, data classes,
//! field partitions), for the router and the tools.

use super::*;

/// A rule of a validated table.
#[derive(Clone, Copy, Debug)]
pub struct RuleView<'t> {
    pub(super) t: &'t Table<'t>,
    pub(super) i: u32,
}

impl<'t> RuleView<'t> {
    fn rec(&self) -> &'t [u8] {
        self.t.record(self.t.rules, rule::LEN, self.i)
    }

    /// Index in declaration order (the default's is the rule count).
    #[must_use]
    pub fn index(&self) -> u32 {
        self.i
    }

    /// Whether this is the default.
    #[must_use]
    pub fn is_default(&self) -> bool {
        self.i == self.t.rule_count
    }

    /// The rule's `name`, empty if it has none (the default's is `default`).
    #[must_use]
    pub fn name(&self) -> &'t str {
        self.t.text(ref_at(self.rec(), rule::NAME))
    }

    /// Route or deny.
    #[must_use]
    pub fn action(&self) -> Action {
        Action::from_code(u8_at(self.rec(), rule::ACTION)).unwrap_or(Action::Deny)
    }

    /// The endpoint routed to (`None` for deny).
    #[must_use]
    pub fn endpoint(&self) -> Option<EndpointView<'t>> {
        self.t.endpoint(u32_at(self.rec(), rule::ENDPOINT))
    }

    /// The endpoints of the rule's `route_to`: the one [`RuleView::endpoint`], then the other
    /// members of a balanced set (empty for deny).
    pub fn route_set(&self) -> impl Iterator<Item = EndpointView<'t>> + use<'t> {
        let rec = self.rec();
        let start = u32_at(rec, rule::SET_START);
        let count = u32_at(rec, rule::SET_COUNT);
        let t = self.t;
        self.endpoint()
            .into_iter()
            .chain((0..count).filter_map(move |k| t.endpoint(u32_at(t.u32s, ix(start + k) * 4))))
    }

    /// `resend_on_reset`: a request whose connection broke after it was sent, before any
    /// answer, may go to the next candidate.
    #[must_use]
    pub fn resend_on_reset(&self) -> bool {
        u8_at(self.rec(), rule::FLAGS) & rule::FLAG_RESEND_ON_RESET != 0
    }

    /// Whether `route_to` lists more than one endpoint.
    #[must_use]
    pub fn is_balanced(&self) -> bool {
        u32_at(self.rec(), rule::SET_COUNT) > 0
    }

    /// Fallback endpoints, in order.
    pub fn fallback(&self) -> impl Iterator<Item = EndpointView<'t>> + use<'t> {
        let rec = self.rec();
        let start = u32_at(rec, rule::FALLBACK_START);
        let count = u32_at(rec, rule::FALLBACK_COUNT);
        let t = self.t;
        (0..count).filter_map(move |k| t.endpoint(u32_at(t.u32s, ix(start + k) * 4)))
    }

    /// Source text of the condition on `field`, `None` if the rule does not constrain it.
    #[must_use]
    pub fn condition(&self, field: Field) -> Option<&'t str> {
        let text = self
            .t
            .text(ref_at(self.rec(), rule::CONDS + 8 * field.index()));
        (!text.is_empty()).then_some(text)
    }

    /// Where the rule is declared in the policy source (line, column; 1-based).
    #[must_use]
    pub fn source_position(&self) -> (u32, u32) {
        let rec = self.rec();
        (u32_at(rec, rule::LINE), u32_at(rec, rule::COLUMN))
    }
}

/// An endpoint of a validated table.
#[derive(Clone, Copy, Debug)]
pub struct EndpointView<'t> {
    pub(super) t: &'t Table<'t>,
    pub(super) i: u32,
}

impl<'t> EndpointView<'t> {
    fn rec(&self) -> &'t [u8] {
        self.t.record(self.t.endpoints, endpoint::LEN, self.i)
    }

    fn text(&self, off: usize) -> &'t str {
        self.t.text(ref_at(self.rec(), off))
    }

    /// Index in the table.
    #[must_use]
    pub fn index(&self) -> u32 {
        self.i
    }
    #[must_use]
    pub fn id(&self) -> &'t str {
        self.text(endpoint::ID)
    }
    #[must_use]
    pub fn kind(&self) -> EndpointKind {
        EndpointKind::from_code(u8_at(self.rec(), endpoint::KIND)).unwrap_or(EndpointKind::Custom)
    }
    /// Base URL; empty for a managed provider's default.
    #[must_use]
    pub fn url(&self) -> &'t str {
        self.text(endpoint::URL)
    }
    #[must_use]
    pub fn transport(&self) -> Transport {
        Transport::from_code(u8_at(self.rec(), endpoint::TRANSPORT)).unwrap_or(Transport::Public)
    }
    /// Models served; empty for "any".
    pub fn models(&self) -> impl Iterator<Item = &'t str> + use<'t> {
        let rec = self.rec();
        self.t.str_list(
            u32_at(rec, endpoint::MODELS_START),
            u32_at(rec, endpoint::MODELS_COUNT),
        )
    }
    /// Whether the endpoint serves `model` (an endpoint without a model list serves any).
    #[must_use]
    pub fn serves(&self, model: &str) -> bool {
        let mut models = self.models().peekable();
        models.peek().is_none() || models.any(|m| m == model)
    }
    /// The model `auto` resolves to: `default_model`, else the first listed model.
    #[must_use]
    pub fn default_model(&self) -> Option<&'t str> {
        let explicit = self.text(endpoint::DEFAULT_MODEL);
        if explicit.is_empty() {
            self.models().next()
        } else {
            Some(explicit)
        }
    }
    #[must_use]
    pub fn health_check_interval_ms(&self) -> u32 {
        u32_at(self.rec(), endpoint::HEALTH_MS)
    }
    #[must_use]
    pub fn timeout_ms(&self) -> u32 {
        u32_at(self.rec(), endpoint::TIMEOUT_MS)
    }
    /// `timeouts.connect_ms` (0: the router's default).
    #[must_use]
    pub fn connect_timeout_ms(&self) -> u32 {
        u32_at(self.rec(), endpoint::CONNECT_MS)
    }
    /// `timeouts.ttft_ms`: to the response head (0: `timeout_ms`, else the router's default).
    #[must_use]
    pub fn ttft_timeout_ms(&self) -> u32 {
        u32_at(self.rec(), endpoint::TTFT_MS)
    }
    /// `timeouts.idle_ms`: the longest gap between body reads (0: `timeout_ms`, else the
    /// router's default).
    #[must_use]
    pub fn idle_timeout_ms(&self) -> u32 {
        u32_at(self.rec(), endpoint::IDLE_MS)
    }
    /// `timeouts.total_ms`: a whole attempt (0: no limit but the request's).
    #[must_use]
    pub fn total_timeout_ms(&self) -> u32 {
        u32_at(self.rec(), endpoint::TOTAL_MS)
    }
    /// `health_check.path` (empty: the type's default).
    #[must_use]
    pub fn health_check_path(&self) -> &'t str {
        self.text(endpoint::HEALTH_PATH)
    }
    /// `health_check.timeout_ms` (0: the default).
    #[must_use]
    pub fn health_check_timeout_ms(&self) -> u32 {
        u32_at(self.rec(), endpoint::HEALTH_TIMEOUT_MS)
    }
    /// `health_check.unhealthy_threshold` (0: the default).
    #[must_use]
    pub fn unhealthy_threshold(&self) -> u8 {
        u8_at(self.rec(), endpoint::UNHEALTHY_THRESHOLD)
    }
    /// `health_check.healthy_threshold` (0: the default).
    #[must_use]
    pub fn healthy_threshold(&self) -> u8 {
        u8_at(self.rec(), endpoint::HEALTHY_THRESHOLD)
    }
    /// Share in a balanced `route_to` set (≥ 1).
    #[must_use]
    pub fn weight(&self) -> u32 {
        u32_at(self.rec(), endpoint::WEIGHT).max(1)
    }
    #[must_use]
    pub fn input_per_1k(&self) -> Micros {
        Micros(u64_at(self.rec(), endpoint::INPUT_PER_1K))
    }
    #[must_use]
    pub fn output_per_1k(&self) -> Micros {
        Micros(u64_at(self.rec(), endpoint::OUTPUT_PER_1K))
    }
    /// Name of the environment variable holding the API key (empty if none).
    #[must_use]
    pub fn api_key_env(&self) -> &'t str {
        self.text(endpoint::API_KEY_ENV)
    }
    /// Path of the file holding the API key (empty if none).
    #[must_use]
    pub fn api_key_file(&self) -> &'t str {
        self.text(endpoint::API_KEY_FILE)
    }
    #[must_use]
    pub fn region(&self) -> &'t str {
        self.text(endpoint::REGION)
    }
    #[must_use]
    pub fn api_version(&self) -> &'t str {
        self.text(endpoint::API_VERSION)
    }
    #[must_use]
    pub fn deployment(&self) -> &'t str {
        self.text(endpoint::DEPLOYMENT)
    }
    #[must_use]
    pub fn project(&self) -> &'t str {
        self.text(endpoint::PROJECT)
    }
    #[must_use]
    pub fn location(&self) -> &'t str {
        self.text(endpoint::LOCATION)
    }

    /// PEM file of extra CA certificates trusted for this endpoint; empty if none.
    #[must_use]
    pub fn ca_file(&self) -> &'t str {
        self.text(endpoint::CA_FILE)
    }
    /// Vertex: the service-account key file (empty: the metadata server).
    #[must_use]
    pub fn credentials_file(&self) -> &'t str {
        self.text(endpoint::CREDENTIALS_FILE)
    }
    #[must_use]
    pub fn aws_access_key_id_env(&self) -> &'t str {
        self.text(endpoint::AWS_ACCESS_KEY_ID_ENV)
    }
    #[must_use]
    pub fn aws_secret_access_key_env(&self) -> &'t str {
        self.text(endpoint::AWS_SECRET_ACCESS_KEY_ENV)
    }
    #[must_use]
    pub fn aws_session_token_env(&self) -> &'t str {
        self.text(endpoint::AWS_SESSION_TOKEN_ENV)
    }
    /// Bedrock: the API it is called through (`None` for other types).
    #[must_use]
    pub fn bedrock_api(&self) -> Option<BedrockApi> {
        BedrockApi::from_code(u8_at(self.rec(), endpoint::BEDROCK_API))
    }
    /// Each model with the id sent to the provider for it (the name itself when the policy
    /// gave none).
    pub fn models_with_upstream(&self) -> impl Iterator<Item = (&'t str, &'t str)> + use<'t> {
        let rec = self.rec();
        let ids = self.t.str_list(
            u32_at(rec, endpoint::UPSTREAM_MODELS_START),
            u32_at(rec, endpoint::MODELS_COUNT),
        );
        self.models()
            .zip(ids)
            .map(|(name, id)| (name, if id.is_empty() { name } else { id }))
    }
    /// The id sent to the provider for `model` (itself when the policy maps it to none).
    #[must_use]
    pub fn upstream_model<'m>(&self, model: &'m str) -> &'m str
    where
        't: 'm,
    {
        self.models_with_upstream()
            .find(|(name, _)| *name == model)
            .map_or(model, |(_, id)| id)
    }
    /// The optional text settings under their policy keys (`api_key_env`, `region`, ...),
    /// empty where not set.
    #[must_use]
    pub fn text_settings(&self) -> [(&'static str, &'t str); 12] {
        [
            ("api_key_env", self.api_key_env()),
            ("api_key_file", self.api_key_file()),
            ("region", self.region()),
            ("api_version", self.api_version()),
            ("deployment", self.deployment()),
            ("project", self.project()),
            ("location", self.location()),
            ("ca_file", self.ca_file()),
            ("credentials_file", self.credentials_file()),
            ("aws_access_key_id_env", self.aws_access_key_id_env()),
            (
                "aws_secret_access_key_env",
                self.aws_secret_access_key_env(),
            ),
            ("aws_session_token_env", self.aws_session_token_env()),
        ]
    }
    /// Whether the policy did not declare it (a managed provider's built-in endpoint).
    #[must_use]
    pub fn is_builtin(&self) -> bool {
        u8_at(self.rec(), endpoint::FLAGS) & endpoint::FLAG_BUILTIN != 0
    }
}

/// A tenant of a validated table.
#[derive(Clone, Copy, Debug)]
pub struct TenantView<'t> {
    pub(super) t: &'t Table<'t>,
    pub(super) i: u32,
}

impl<'t> TenantView<'t> {
    /// Position in declaration order.
    #[must_use]
    pub fn index(&self) -> u32 {
        self.i
    }

    fn rec(&self) -> &'t [u8] {
        self.t.record(self.t.tenants, tenant::LEN, self.i)
    }
    #[must_use]
    pub fn id(&self) -> &'t str {
        self.t.text(ref_at(self.rec(), tenant::ID))
    }
    /// `None` if the tenant may use any model.
    #[must_use]
    pub fn model_allowlist(&self) -> Option<impl Iterator<Item = &'t str> + use<'t>> {
        let rec = self.rec();
        (u32_at(rec, tenant::FLAGS) & tenant::FLAG_ALLOWLIST != 0).then(|| {
            self.t.str_list(
                u32_at(rec, tenant::ALLOW_START),
                u32_at(rec, tenant::ALLOW_COUNT),
            )
        })
    }
    /// Whether the tenant may use `model`.
    #[must_use]
    pub fn allows(&self, model: &str) -> bool {
        self.model_allowlist()
            .is_none_or(|mut list| list.any(|m| m == model))
    }
    #[must_use]
    pub fn rate_limit_rpm(&self) -> u32 {
        u32_at(self.rec(), tenant::RPM)
    }
    #[must_use]
    pub fn rate_limit_tpm(&self) -> u64 {
        u64_at(self.rec(), tenant::TPM)
    }
    #[must_use]
    pub fn daily_budget(&self) -> Micros {
        Micros(u64_at(self.rec(), tenant::DAILY_BUDGET))
    }

    /// Tokens (prompt + completion) per UTC day; 0 for no limit.
    #[must_use]
    pub fn daily_token_budget(&self) -> u64 {
        u64_at(self.rec(), tenant::DAILY_TOKENS)
    }
    #[must_use]
    pub fn audit_bucket(&self) -> &'t str {
        self.t.text(ref_at(self.rec(), tenant::AUDIT_BUCKET))
    }
}

/// A data class of a validated table.
#[derive(Clone, Copy, Debug)]
pub struct DataClassView<'t> {
    pub(super) t: &'t Table<'t>,
    pub(super) i: u32,
}

impl<'t> DataClassView<'t> {
    fn rec(&self) -> &'t [u8] {
        self.t.record(self.t.data_classes, data_class::LEN, self.i)
    }
    #[must_use]
    pub fn id(&self) -> &'t str {
        self.t.text(ref_at(self.rec(), data_class::ID))
    }
    #[must_use]
    pub fn stays_private(&self) -> bool {
        u32_at(self.rec(), data_class::FLAGS) & data_class::FLAG_STAYS_PRIVATE != 0
    }
}

/// A literal of a string field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiteralView<'t> {
    pub text: &'t str,
    pub class: u32,
}

/// A glob of a string field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobView<'t> {
    pub prefix: &'t str,
    pub class: u32,
}

/// The classifier of one field, for tools (dump, explain, diff).
#[derive(Clone, Copy, Debug)]
pub struct FieldView<'t> {
    pub(super) t: &'t Table<'t>,
    pub(super) f: Field,
    pub(super) d: FieldDesc,
}

impl<'t> FieldView<'t> {
    #[must_use]
    pub fn field(&self) -> Field {
        self.f
    }
    /// Whether any rule reads this field.
    #[must_use]
    pub fn is_used(&self) -> bool {
        self.d.used
    }
    #[must_use]
    pub fn class_count(&self) -> u32 {
        self.d.class_count
    }
    /// Number of distinct rule bit-vectors.
    #[must_use]
    pub fn column_count(&self) -> u32 {
        self.d.col_count
    }
    /// Literals (string fields), in hash-slot order.
    pub fn literals(&self) -> impl Iterator<Item = LiteralView<'t>> + use<'t> {
        let (t, d) = (self.t, self.d);
        (0..d.lit_slots).filter_map(move |s| {
            let off = ix(d.lit_start + s) * 16;
            let class = u32_at(t.literals, off + literal::CLASS);
            (class != NONE).then(|| LiteralView {
                text: t.text(ref_at(t.literals, off + literal::TEXT)),
                class,
            })
        })
    }
    /// Globs (string fields), sorted by prefix.
    pub fn globs(&self) -> impl Iterator<Item = GlobView<'t>> + use<'t> {
        let (t, d) = (self.t, self.d);
        (0..d.glob_count).map(move |g| {
            let off = ix(d.glob_start + g) * 16;
            GlobView {
                prefix: t.text(ref_at(t.globs, off + glob::PREFIX)),
                class: u32_at(t.globs, off + glob::CLASS),
            }
        })
    }
    /// Interval starts (numeric fields).
    pub fn bounds(&self) -> impl Iterator<Item = u64> + use<'t> {
        let (t, d) = (self.t, self.d);
        (0..d.bound_count).map(move |k| u64_at(t.bounds, ix(d.bound_start + k) * 8))
    }
    /// The class of a string value (`None` = absent). Numeric fields give "absent".
    #[must_use]
    pub fn classify_str(&self, value: Option<&[u8]>) -> u32 {
        let mut req = Request::default();
        match self.f {
            Field::Tenant => req.tenant = value,
            Field::DataClass => req.data_class = value,
            Field::UserRole => req.user_role = value,
            Field::Model => req.model = value,
            Field::LatencyBudgetMs | Field::CostCapPer1k => return ABSENT,
        }
        self.t.class_of(self.f, &self.t.runtime(&self.d), &req)
    }
    /// The class of a numeric value (`None` = absent). String fields give "absent".
    #[must_use]
    pub fn classify_num(&self, value: Option<u64>) -> u32 {
        let mut req = Request::default();
        match self.f {
            Field::LatencyBudgetMs => req.latency_budget_ms = value,
            Field::CostCapPer1k => req.cost_cap_per_1k = value.map(Micros),
            Field::Tenant | Field::DataClass | Field::UserRole | Field::Model => return ABSENT,
        }
        self.t.class_of(self.f, &self.t.runtime(&self.d), &req)
    }
    /// Whether `rule` accepts values of `class` on this field.
    #[must_use]
    pub fn accepts(&self, class: u32, rule: u32) -> bool {
        if class >= self.d.class_count || rule >= self.t.rule_count {
            return false;
        }
        let col = self.t.column(&self.t.runtime(&self.d), class);
        u64_at(col, ix(rule / 64) * 8) >> (rule % 64) & 1 == 1
    }
    /// The rules (indices) that accept values of `class`, in order.
    pub fn rules_accepting(&self, class: u32) -> impl Iterator<Item = u32> + use<'t> {
        let col = if class < self.d.class_count {
            self.t.column(&self.t.runtime(&self.d), class)
        } else {
            &[]
        };
        col.chunks_exact(8).enumerate().flat_map(|(w, bytes)| {
            let mut word = u64::from_le_bytes(bytes.try_into().unwrap_or_default());
            std::iter::from_fn(move || {
                if word == 0 {
                    return None;
                }
                let bit = word.trailing_zeros();
                word &= word - 1;
                Some(crate::partition::to_u32(w * 64) + bit)
            })
        })
    }
    /// The column index of `class`.
    #[must_use]
    pub fn column_of(&self, class: u32) -> u32 {
        u32_at(self.t.class_cols, ix(self.d.classcol_start + class) * 4)
    }
    /// The field's kind.
    #[must_use]
    pub fn kind(&self) -> FieldKind {
        self.f.kind()
    }
}
