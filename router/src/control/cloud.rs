//! What the cloud providers' endpoints need beyond a URL and a key: Bedrock's region and AWS
//! credentials (read from the environment, named never shown), and Vertex AI's base URL and
//! which publisher serves a model (`claude-*` Anthropic, others Google, unless the provider id
//! says `anthropic/…` or `google/…`).

use switchyard_table::EndpointKind;

use crate::dialect::Wire;

/// A Bedrock endpoint's region: its `region`, else (the built-in `bedrock`) `AWS_REGION` or
/// `AWS_DEFAULT_REGION`. Empty for other types.
pub(super) fn bedrock_region(e: &switchyard_table::EndpointView<'_>) -> Result<String, String> {
    if e.kind() != EndpointKind::Bedrock {
        return Ok(String::new());
    }
    if !e.region().is_empty() {
        return Ok(e.region().to_owned());
    }
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
        .map(|v| v.trim().to_owned())
        .ok_or_else(|| {
            "it has no `region` and neither AWS_REGION nor AWS_DEFAULT_REGION is set".to_owned()
        })
}

/// A Bedrock endpoint's AWS credentials, from the environment variables it names (or the
/// standard ones). Errors name the variable, never a value.
pub(super) fn aws_credentials<'t>(
    e: &switchyard_table::EndpointView<'t>,
) -> Result<crate::upstream::sigv4::Credentials, String> {
    let or = |given: &'t str, name: &'static str| -> &'t str {
        if given.is_empty() { name } else { given }
    };
    let id_name = or(e.aws_access_key_id_env(), "AWS_ACCESS_KEY_ID");
    let secret_name = or(e.aws_secret_access_key_env(), "AWS_SECRET_ACCESS_KEY");
    let token_name = or(e.aws_session_token_env(), "AWS_SESSION_TOKEN");
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let one_line = |name: &str, v: String| {
        if v.bytes().any(|b| b < 0x20 || b == 0x7f) {
            Err(format!(
                "environment variable `{name}` holds a control character; it must be one line"
            ))
        } else {
            Ok(v)
        }
    };
    let access_key_id = var(id_name).ok_or_else(|| {
        format!("environment variable `{id_name}` (its AWS access key id) is not set")
    })?;
    let secret_access_key = var(secret_name).ok_or_else(|| {
        format!("environment variable `{secret_name}` (its AWS secret access key) is not set")
    })?;
    Ok(crate::upstream::sigv4::Credentials {
        access_key_id: one_line(id_name, access_key_id)?,
        secret_access_key: one_line(secret_name, secret_access_key)?,
        session_token: var(token_name)
            .map(|t| one_line(token_name, t))
            .transpose()?,
    })
}

/// A Vertex AI model publisher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Publisher {
    /// Claude models (`rawPredict`, Anthropic bodies).
    Anthropic,
    /// Gemini models (`generateContent`).
    Google,
}

impl Publisher {
    /// The publisher's path segment.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anthropic => "anthropic",
            Self::Google => "google",
        }
    }

    /// The dialect its models speak.
    #[must_use]
    pub fn wire(self) -> Wire {
        match self {
            Self::Anthropic => Wire::VertexAnthropic,
            Self::Google => Wire::Gemini,
        }
    }
}

/// Which publisher serves a Vertex model id, and the id as Vertex names it: an
/// `anthropic/` or `google/` prefix says it outright (a tuned or renamed model); else
/// `claude…` is Anthropic's and every other id Google's.
#[must_use]
pub fn vertex_model(id: &str) -> (Publisher, &str) {
    if let Some(rest) = id.strip_prefix("anthropic/") {
        (Publisher::Anthropic, rest)
    } else if let Some(rest) = id.strip_prefix("google/") {
        (Publisher::Google, rest)
    } else if id.starts_with("claude") {
        (Publisher::Anthropic, id)
    } else {
        (Publisher::Google, id)
    }
}

/// A Vertex endpoint's project and location: its own, else (the built-in `vertex`)
/// `GOOGLE_CLOUD_PROJECT` and `GOOGLE_CLOUD_LOCATION` (or `CLOUD_ML_REGION`, as Anthropic's
/// Vertex client reads it).
pub(super) fn vertex_place(
    e: &switchyard_table::EndpointView<'_>,
) -> Result<(String, String), String> {
    let env = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
            .map(|v| v.trim().to_owned())
    };
    let project = Some(e.project())
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .or_else(|| env(&["GOOGLE_CLOUD_PROJECT"]))
        .ok_or("it has no `project` and GOOGLE_CLOUD_PROJECT is not set")?;
    let location = Some(e.location())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .or_else(|| env(&["GOOGLE_CLOUD_LOCATION", "CLOUD_ML_REGION"]))
        .ok_or(
            "it has no `location` and neither GOOGLE_CLOUD_LOCATION nor CLOUD_ML_REGION is set",
        )?;
    Ok((project, location))
}

/// Vertex AI's base URL for a location: `global` and the multi-regions `us` and `eu` have
/// their own hosts; every region `https://{location}-aiplatform.googleapis.com`.
#[must_use]
pub fn vertex_url(location: &str) -> String {
    match location {
        "global" => "https://aiplatform.googleapis.com".to_owned(),
        "us" | "eu" => format!("https://aiplatform.{location}.rep.googleapis.com"),
        region => format!("https://{region}-aiplatform.googleapis.com"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishers_follow_the_name_unless_the_id_says() {
        assert_eq!(
            vertex_model("claude-sonnet-4-5@20250929"),
            (Publisher::Anthropic, "claude-sonnet-4-5@20250929")
        );
        assert_eq!(
            vertex_model("gemini-2.5-flash"),
            (Publisher::Google, "gemini-2.5-flash")
        );
        assert_eq!(
            vertex_model("anthropic/my-tuned"),
            (Publisher::Anthropic, "my-tuned")
        );
        assert_eq!(vertex_model("google/claude-lookalike").0, Publisher::Google);
        assert_eq!(
            vertex_url("us-east5"),
            "https://us-east5-aiplatform.googleapis.com"
        );
        assert_eq!(vertex_url("global"), "https://aiplatform.googleapis.com");
        assert_eq!(vertex_url("eu"), "https://aiplatform.eu.rep.googleapis.com");
    }
}
