//! Follows ticketd's change events on NATS JetStream (`ticketd serve --events-nats ...`) with a
//! durable pull consumer: every event once, in `seq` order, acknowledged only after it was
//! handled, so a consumer that crashes and restarts continues where it was.
//!
//! ```sh
//! cargo run -p ticketd --example jetstream_consumer -- nats://127.0.0.1:4222 TICKETD_EVENTS
//! ```
//!
//! See docs/EVENTS.md.

use futures::StreamExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
    let stream = args.next().unwrap_or_else(|| "TICKETD_EVENTS".to_owned());
    let js = async_nats::jetstream::new(async_nats::connect(url.as_str()).await?);
    let consumer = js
        .get_stream(&stream)
        .await?
        .get_or_create_consumer(
            "example-consumer",
            async_nats::jetstream::consumer::pull::Config {
                durable_name: Some("example-consumer".to_owned()),
                // One at a time, in stream order: the next event only after this one's ack.
                max_ack_pending: 1,
                ..Default::default()
            },
        )
        .await?;
    let mut messages = consumer.messages().await?;
    let mut last_seq = None;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| anyhow::anyhow!(e))?;
        let event: serde_json::Value = serde_json::from_slice(&message.payload)?;
        let seq = event["seq"].as_i64().unwrap_or_default();
        if let Some(last) = last_seq {
            // The stream holds the feed in order; a jump would be a configuration error
            // (another stream, events deleted by a retention limit).
            anyhow::ensure!(seq == last + 1, "expected seq {}, got {seq}", last + 1);
        }
        println!(
            "{seq} {} {} {}",
            event["type"], event["subject"], event["data"]
        );
        message.ack().await.map_err(|e| anyhow::anyhow!(e))?;
        last_seq = Some(seq);
    }
    Ok(())
}
