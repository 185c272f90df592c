//! Installs the committed CustomResourceDefinition with server-side apply and waits until the
//! API server serves it. The CRD is left in place afterwards (it is cluster-wide and may be
//! shared with an installed operator).

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube_changejob::api::ChangeTriggeredJob;

use super::wait::{Poll, wait_for};
use super::{Context, Failure, Outcome};

/// Field manager of everything the suite applies.
pub const FIELD_MANAGER: &str = "kube-changejob-e2e";

/// The CRD as committed (the file Helm installs).
const CRD_YAML: &str = include_str!("../../charts/crds/templates/changetriggeredjobs.yaml");

/// Applies the CRD (forcing ownership of its fields) and waits until it is Established and
/// ChangeTriggeredJobs can be listed in `namespace`.
pub async fn install(client: &Client, namespace: &str) -> Outcome<String> {
    let crd: serde_json::Value = serde_saphyr::from_str(CRD_YAML)
        .context("parsing charts/crds/templates/changetriggeredjobs.yaml")?;
    let name = crd["metadata"]["name"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Failure::new("the committed CRD has no metadata.name"))?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .context(format!("server-side apply of CRD {name}"))?;

    wait_for(
        &format!("CRD {name} to be Established"),
        Duration::from_secs(30),
        Duration::from_millis(500),
        || async {
            let crd = api
                .get(&name)
                .await
                .context(format!("reading CRD {name}"))?;
            let conditions = crd
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            let established = conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            Ok(if established {
                Poll::Ready(())
            } else {
                Poll::Pending(format!(
                    "conditions {:?}",
                    conditions
                        .iter()
                        .map(|c| format!("{}={}", c.type_, c.status))
                        .collect::<Vec<_>>()
                ))
            })
        },
    )
    .await?;

    let ctjs: Api<ChangeTriggeredJob> = Api::namespaced(client.clone(), namespace);
    wait_for(
        "ChangeTriggeredJobs to be served",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || async {
            Ok(match ctjs.list(&ListParams::default().limit(1)).await {
                Ok(_) => Poll::Ready(()),
                Err(e) => Poll::Pending(e.to_string()),
            })
        },
    )
    .await?;
    Ok(name)
}
