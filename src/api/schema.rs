//! Hand-tuned pieces of the CRD's OpenAPI schema.
//!
//! `jobTemplate` embeds the full typed `batch/v1` JobTemplateSpec schema, including full
//! ObjectMeta schemas for the Job's and the pod template's metadata: with an opaque object
//! there, the API server would prune their labels and annotations. The upstream descriptions
//! inside that embedded schema are dropped to keep the CRD small enough for a client-side
//! `kubectl apply` (the last-applied annotation caps it at 256 KiB); `kubectl explain` on the
//! Job fields of a real Job still has them.

use k8s_openapi::api::batch::v1::JobTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::{Schema, SchemaGenerator};
use serde_json::{Value, json};

/// Schema of `spec.jobTemplate`: the typed Job template without upstream descriptions.
pub(crate) fn job_template(generator: &mut SchemaGenerator) -> Schema {
    let mut value = generator.subschema_for::<JobTemplateSpec>().to_value();
    strip_descriptions(&mut value);
    let mut schema = Schema::try_from(value).unwrap_or_default();
    schema.insert(
        "description".into(),
        json!(
            "Template of the Job created on every trigger (a batch/v1 JobTemplateSpec). \
             metadata.name and metadata.generateName are ignored."
        ),
    );
    schema
}

/// Schema of `status.conditions`: a list keyed by condition type, so server-side apply merges
/// entries by type.
pub(crate) fn conditions(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    if let Some(items) = schema.get_mut("items") {
        strip_descriptions(items);
    }
    schema.insert("x-kubernetes-list-type".into(), json!("map"));
    schema.insert("x-kubernetes-list-map-keys".into(), json!(["type"]));
    schema.insert(
        "description".into(),
        json!("Ready, Available, Progressing and Degraded, each with a reason and a message."),
    );
    schema
}

/// Removes every `description` keyword from a schema, recursing into every subschema.
fn strip_descriptions(value: &mut Value) {
    match value {
        Value::Object(map) => {
            // A property literally named "description" lives under "properties" and is a
            // schema (an object); the keyword is a string. Only drop the keyword.
            if map.get("description").is_some_and(Value::is_string) {
                map.remove("description");
            }
            for child in map.values_mut() {
                strip_descriptions(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_descriptions),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_descriptions_keeps_properties_named_description() {
        let mut schema = json!({
            "description": "drop me",
            "properties": {
                "description": {"type": "string", "description": "drop me too"},
                "x": {"type": "integer"}
            }
        });
        strip_descriptions(&mut schema);
        assert_eq!(
            schema,
            json!({"properties": {"description": {"type": "string"}, "x": {"type": "integer"}}})
        );
    }
}
