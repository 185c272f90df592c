//! Prints the API server's own request counter, `apiserver_request_total` from its `/metrics`,
//! summed by verb and resource, as JSON (`{"LIST configmaps": 12, ...}`). It reads whatever
//! `KUBECONFIG` names: a real cluster (the caller needs `get` on the `/metrics` non-resource
//! URL) or the fake API server, which serves the same counter. `hack/measure-operator.sh` takes
//! two readings and subtracts them.
//!
//! ```text
//! cargo run --release --example apiserver_requests -- configmaps changetriggeredjobs jobs
//! ```

use std::collections::BTreeMap;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let resources: Vec<String> = std::env::args().skip(1).collect();
    let client = kube::Client::try_default().await?;
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    let mut totals: BTreeMap<String, f64> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels.split(',').find_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                (key == name).then(|| value.trim_matches('"').to_string())
            })
        };
        let (Some(verb), Some(resource)) = (label("verb"), label("resource")) else {
            continue;
        };
        if !resources.is_empty() && !resources.contains(&resource) {
            continue;
        }
        let value: f64 = value.trim().parse().unwrap_or(0.0);
        *totals.entry(format!("{verb} {resource}")).or_default() += value;
    }
    println!("{}", serde_json::to_string(&totals)?);
    Ok(())
}
