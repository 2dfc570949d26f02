//! Helpers shared by the reliability tests: a worker's call through the real layer, a metrics
//! recorder and a tracing capture that the tests read back.
#![allow(dead_code)]

use std::convert::Infallible;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use highway_ratelimit::layer::{
    Cost, RateLimitError, RateLimitLayer, TenantId, ToolName, WorkflowRunId,
};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use tower::{Service, ServiceBuilder, ServiceExt};

/// One tool call's identity, as trusted code inserts it into the request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub tenant: &'a str,
    pub tool: &'a str,
    pub run: Option<&'a str>,
    pub cost: u64,
}

impl<'a> Call<'a> {
    pub fn new(tenant: &'a str, tool: &'a str) -> Self {
        Call {
            tenant,
            tool,
            run: None,
            cost: 1,
        }
    }
}

/// Sends one request through `layer` to a tool that always succeeds.
pub async fn call(
    layer: &RateLimitLayer,
    call: Call<'_>,
) -> Result<(), RateLimitError<Infallible>> {
    let mut service = ServiceBuilder::new()
        .layer(layer.clone())
        .service_fn(|_request: http::Request<()>| async { Ok::<_, Infallible>(()) });
    let mut request = http::Request::new(());
    request.extensions_mut().insert(TenantId::new(call.tenant));
    request.extensions_mut().insert(ToolName::new(call.tool));
    if let Some(run) = call.run {
        request.extensions_mut().insert(WorkflowRunId::new(run));
    }
    if call.cost != 1 {
        request
            .extensions_mut()
            .insert(Cost::new(call.cost).expect("a test cost is not 0"));
    }
    service.ready().await?.call(request).await
}

/// Returns the reason's short name of a rejected call, `"admitted"` for an admitted one.
pub fn outcome(result: &Result<(), RateLimitError<Infallible>>) -> &'static str {
    match result {
        Ok(()) => "admitted",
        Err(RateLimitError::Rejected(rejection)) => rejection.reason().as_str(),
        Err(RateLimitError::Service(never)) => match *never {},
    }
}

/// A metrics recorder that keeps counters, by name and labels, for the test to read.
#[derive(Debug, Default)]
pub struct CountingRecorder {
    counters: Mutex<Vec<(Key, Arc<AtomicU64>)>>,
}

impl CountingRecorder {
    /// Installs the recorder for the whole test process, once.
    pub fn global() -> &'static CountingRecorder {
        static RECORDER: OnceLock<&'static CountingRecorder> = OnceLock::new();
        RECORDER.get_or_init(|| {
            let recorder: &'static CountingRecorder = Box::leak(Box::default());
            metrics::set_global_recorder(recorder).expect("no other metrics recorder is installed");
            recorder
        })
    }

    /// Returns the sum of the counter `name` over the series with label `label` = `value`.
    pub fn counter(&self, name: &str, label: &str, value: &str) -> u64 {
        let counters = self.counters.lock().unwrap();
        counters
            .iter()
            .filter(|(key, _)| key.name() == name)
            .filter(|(key, _)| {
                key.labels()
                    .any(|found| found.key() == label && found.value() == value)
            })
            .map(|(_, count)| count.load(Ordering::Relaxed))
            .sum()
    }
}

impl Recorder for CountingRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut counters = self.counters.lock().unwrap();
        if let Some((_, count)) = counters.iter().find(|(found, _)| found == key) {
            return Counter::from_arc(count.clone());
        }
        let count = Arc::new(AtomicU64::new(0));
        counters.push((key.clone(), count.clone()));
        Counter::from_arc(count)
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// Every line the process logs through `tracing`, at every level, kept in memory.
#[derive(Debug, Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Installs a global `tracing` subscriber at TRACE level that writes into the capture, once
    /// per test process.
    pub fn global() -> &'static CapturedLogs {
        static LOGS: OnceLock<CapturedLogs> = OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = CapturedLogs::default();
            let writer = logs.clone();
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .init();
            logs
        })
    }

    /// Returns everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
