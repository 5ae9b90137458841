//! A runner shaped like rustle-deploy's: a tokio runtime, serde, tracing, and a reqwest client with its default TLS (OpenSSL on Linux, SChannel on Windows, Security.framework on macOS), built but never used, so it runs without a network.

/// What a generated runner would carry: its plan.
#[derive(serde::Serialize)]
struct Plan {
    tasks: u32,
}

/// A plan with nothing to do.
#[derive(Debug, thiserror::Error)]
#[error("the plan has no tasks")]
struct EmptyPlan;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let client = reqwest::Client::builder().build()?;
    tracing::info!("client ready: {client:?}");
    let plan = Plan { tasks: 3 };
    if plan.tasks == 0 {
        return Err(EmptyPlan.into());
    }
    let line = serde_json::to_string(&plan)?;
    tokio::task::spawn(async move { println!("runner ok {line} with a TLS client") }).await?;
    Ok(())
}
