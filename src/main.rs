use kube_changejob::api;

fn main() -> anyhow::Result<()> {
    print!("{}", api::crd_yaml()?);
    Ok(())
}
