//! The closed vocabularies a table stores as small integers: match fields, endpoint
//! kinds, transports and rule actions. Each knows its policy spelling so the compiler,
//! the dump and the router print the same words.

/// How a field's values compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// An identifier (tenant, model): exact, case-sensitive; globs allowed.
    Id,
    /// A label (data class, user role): exact, case-sensitive; globs allowed.
    Label,
    /// A non-negative integer.
    Integer,
    /// A non-negative USD amount with at most six decimal places.
    Money,
}

impl FieldKind {
    /// Whether values of this kind are strings (as opposed to numbers).
    #[must_use]
    pub fn is_string(self) -> bool {
        matches!(self, Self::Id | Self::Label)
    }
}

/// A request attribute a rule can match on. The discriminant is the field's slot in
/// the table's field directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Field {
    Tenant = 0,
    DataClass = 1,
    UserRole = 2,
    Model = 3,
    LatencyBudgetMs = 4,
    CostCapPer1k = 5,
}

impl Field {
    /// Every field, in table order.
    pub const ALL: [Field; 6] = [
        Field::Tenant,
        Field::DataClass,
        Field::UserRole,
        Field::Model,
        Field::LatencyBudgetMs,
        Field::CostCapPer1k,
    ];
    /// How many fields a table has.
    pub const COUNT: usize = 6;

    /// The key that names this field in a policy's `match`.
    #[must_use]
    pub fn key(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::DataClass => "data_class",
            Self::UserRole => "user_role",
            Self::Model => "model",
            Self::LatencyBudgetMs => "latency_budget_ms",
            Self::CostCapPer1k => "cost_cap_per_1k",
        }
    }

    /// The field named by a policy key.
    #[must_use]
    pub fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.key() == key)
    }

    /// How values of this field compare.
    #[must_use]
    pub fn kind(self) -> FieldKind {
        match self {
            Self::Tenant | Self::Model => FieldKind::Id,
            Self::DataClass | Self::UserRole => FieldKind::Label,
            Self::LatencyBudgetMs => FieldKind::Integer,
            Self::CostCapPer1k => FieldKind::Money,
        }
    }

    /// Slot of this field in per-field arrays.
    #[must_use]
    pub fn index(self) -> usize {
        self as usize
    }

    /// Bit of this field in a table's "attributes read" mask.
    #[must_use]
    pub fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

macro_rules! closed_vocab {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $code:literal, $word:literal;)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vdoc])* $variant,)+ }

        impl $name {
            /// Every value, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The policy spelling.
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word,)+ }
            }

            /// Parses the policy spelling.
            #[must_use]
            pub fn parse(word: &str) -> Option<Self> {
                match word { $($word => Some($name::$variant),)+ _ => None }
            }

            /// The byte stored in a table.
            #[must_use]
            pub fn code(self) -> u8 {
                match self { $($name::$variant => $code,)+ }
            }

            /// Reads the byte stored in a table.
            #[must_use]
            pub fn from_code(code: u8) -> Option<Self> {
                match code { $($code => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

closed_vocab! {
    /// The API dialect an endpoint speaks.
    EndpointKind {
        Anthropic = 1, "anthropic";
        OpenAi = 2, "openai";
        AzureOpenAi = 3, "azure_openai";
        Bedrock = 4, "bedrock";
        Vertex = 5, "vertex";
        Vllm = 6, "vllm";
        Ollama = 7, "ollama";
        Custom = 8, "custom";
        Mock = 9, "mock";
    }
}

closed_vocab! {
    /// How traffic reaches an endpoint. Only `public` leaves the customer's network,
    /// which is what `stays_private` data classes are checked against.
    Transport {
        Public = 1, "public";
        PrivateLink = 2, "privatelink";
        VpcPeering = 3, "vpc_peering";
        VpcEndpoint = 4, "vpc_endpoint";
        PrivateEndpoint = 5, "private_endpoint";
        Psc = 6, "psc";
    }
}

closed_vocab! {
    /// Which Bedrock API a `bedrock` endpoint is called through.
    BedrockApi {
        /// `Converse` / `ConverseStream`: one request shape for every model.
        Converse = 1, "converse";
        /// `InvokeModel` / `InvokeModelWithResponseStream` with the model's own body
        /// (Anthropic Messages for Claude).
        Invoke = 2, "invoke";
    }
}

closed_vocab! {
    /// What a matching rule does.
    Action {
        /// Forward to the rule's endpoint, then its fallbacks.
        Route = 1, "route";
        /// Refuse the request (only `default: deny` in policy v1).
        Deny = 2, "deny";
    }
}

impl Transport {
    /// Whether traffic over this transport leaves the customer's network.
    #[must_use]
    pub fn is_public(self) -> bool {
        self == Self::Public
    }
}
