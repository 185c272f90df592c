//! `spec.jobTemplate`, kept as compact JSON text.
//!
//! Every cached ChangeTriggeredJob carries its Job template, but only a trigger needs it in
//! typed form. k8s-openapi's `PodSpec` sits inline in `JobTemplateSpec`, so the typed value costs
//! several KiB per CTJ even when the template is a few hundred bytes of JSON. [`JobTemplate`]
//! keeps the JSON text the typed value serializes to, and decodes it on demand.

use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::batch::v1::JobTemplateSpec;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de, ser};

/// A Job template held as the compact JSON of a [`JobTemplateSpec`].
///
/// Reading one goes through the typed value, so it accepts and drops exactly what
/// `JobTemplateSpec` does; equal templates have equal text.
#[derive(Clone, PartialEq, Eq)]
pub struct JobTemplate(Arc<str>);

impl JobTemplate {
    /// Encodes `template`.
    pub fn new(template: &JobTemplateSpec) -> Result<Self, serde_json::Error> {
        serde_json::to_string(template).map(|text| Self(text.into()))
    }

    /// The typed template.
    pub fn decode(&self) -> Result<JobTemplateSpec, serde_json::Error> {
        serde_json::from_str(&self.0)
    }

    /// The compact JSON text.
    pub fn as_json(&self) -> &str {
        &self.0
    }

    /// Decodes, applies `edit`, and encodes again.
    pub fn edit(
        &mut self,
        edit: impl FnOnce(&mut JobTemplateSpec),
    ) -> Result<(), serde_json::Error> {
        let mut template = self.decode()?;
        edit(&mut template);
        *self = Self::new(&template)?;
        Ok(())
    }
}

impl fmt::Debug for JobTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JobTemplate").field(&&*self.0).finish()
    }
}

impl Serialize for JobTemplate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value: serde_json::Value = serde_json::from_str(&self.0).map_err(ser::Error::custom)?;
        value.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for JobTemplate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let template = JobTemplateSpec::deserialize(deserializer)?;
        Self::new(&template).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
    use serde_json::json;

    fn typed() -> JobTemplateSpec {
        JobTemplateSpec {
            metadata: None,
            spec: Some(JobSpec {
                backoff_limit: Some(2),
                template: PodTemplateSpec {
                    metadata: None,
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "run".into(),
                            image: Some("busybox".into()),
                            ..Container::default()
                        }],
                        restart_policy: Some("Never".into()),
                        ..PodSpec::default()
                    }),
                },
                ..JobSpec::default()
            }),
        }
    }

    #[test]
    fn decodes_to_the_typed_template_it_was_made_from() {
        let template = JobTemplate::new(&typed()).unwrap();
        assert_eq!(template.decode().unwrap(), typed());
    }

    #[test]
    fn reads_and_writes_the_same_json_as_the_typed_template() {
        let input = json!({
            "metadata": {"labels": {"team": "a"}},
            "spec": {"template": {"spec": {
                "containers": [{"name": "run", "image": "busybox", "args": ["a", "b"]}],
                "restartPolicy": "Never"
            }}}
        });
        let ours: JobTemplate = serde_json::from_value(input.clone()).unwrap();
        let typed: JobTemplateSpec = serde_json::from_value(input).unwrap();
        assert_eq!(
            serde_json::to_value(&ours).unwrap(),
            serde_json::to_value(&typed).unwrap()
        );
    }

    #[test]
    fn drops_unknown_fields_like_the_typed_template() {
        let ours: JobTemplate =
            serde_json::from_value(json!({"spec": {"template": {}}, "bogus": 1})).unwrap();
        assert!(!ours.as_json().contains("bogus"), "{}", ours.as_json());
    }

    #[test]
    fn rejects_what_the_typed_template_rejects() {
        let wrong = json!({"spec": {"template": {"spec": {"containers": "not a list"}}}});
        assert!(serde_json::from_value::<JobTemplateSpec>(wrong.clone()).is_err());
        assert!(serde_json::from_value::<JobTemplate>(wrong).is_err());
    }

    #[test]
    fn equal_templates_compare_equal_and_an_edit_shows() {
        let a = JobTemplate::new(&typed()).unwrap();
        let mut b = JobTemplate::new(&typed()).unwrap();
        assert_eq!(a, b);
        b.edit(|t| t.spec.as_mut().unwrap().backoff_limit = Some(3))
            .unwrap();
        assert_ne!(a, b);
        assert_eq!(b.decode().unwrap().spec.unwrap().backoff_limit, Some(3));
    }
}
