//! `kvlake mock-broker`: librdkafka's mock cluster as a process of its own, so tests
//! and benchmarks can kill and restart kvlake while the broker keeps its data.
//!
//! It keeps only the last 5 MiB of each partition (hard-coded in librdkafka): callers
//! spread data over enough partitions and check the low watermarks.

use std::io::{BufRead, Write};

use anyhow::{Context, Result};
use rdkafka::mocking::MockCluster;

use crate::cli::MockBrokerArgs;

/// A mock cluster on a thread of its own (its handle is not `Send`).
#[derive(Debug)]
pub struct EmbeddedBroker {
    /// `host:port` to bootstrap from.
    pub bootstrap: String,
    stop: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Starts one broker with the topics, each with `partitions` partitions.
    pub fn start(topics: &[String], partitions: i32) -> Result<EmbeddedBroker> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<String, String>>();
        let (stop, stop_rx) = std::sync::mpsc::channel::<()>();
        let topics = topics.to_vec();
        let thread = std::thread::Builder::new()
            .name("mock-broker".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                for t in &topics {
                    if let Err(e) = cluster.create_topic(t, partitions, 1) {
                        let _ = ready_tx.send(Err(format!("creating topic {t}: {e}")));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                let _ = stop_rx.recv();
            })?;
        let bootstrap = ready_rx
            .recv()
            .context("mock broker thread died")?
            .map_err(anyhow::Error::msg)?;
        Ok(EmbeddedBroker {
            bootstrap,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Prints `BOOTSTRAP=<host:port>` and serves until stdin closes or the process is killed.
pub fn run(args: &MockBrokerArgs) -> Result<()> {
    let broker = EmbeddedBroker::start(&args.topics, args.partitions)?;
    println!("BOOTSTRAP={}", broker.bootstrap);
    std::io::stdout().flush()?;
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        if line.is_err() {
            break;
        }
    }
    Ok(())
}
