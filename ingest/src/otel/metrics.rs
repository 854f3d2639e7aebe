//! The bridge from the `metrics` facade (which every crate records through) to
//! OpenTelemetry meters, and the one global recorder when OTLP is on.
//!
//! The facade allows one global recorder, and `--metrics-addr` is known only once a
//! command has read its settings, after OTLP is set up. So with OTLP on, the global
//! recorder fans out to the OpenTelemetry bridge and to a Prometheus recorder that
//! [`install_prometheus`] may add later; with OTLP off, Prometheus is installed alone.
//! Same names, labels (as attributes), units and descriptions as on `/metrics`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Result, anyhow};
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata,
    SharedString, Unit,
};
use metrics_exporter_prometheus::PrometheusRecorder;
use metrics_util::layers::FanoutBuilder;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;

/// Seconds buckets for the batch and commit histograms (Prometheus and OTLP alike).
pub(crate) const SECONDS_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Set once OTLP metrics are on: the Prometheus recorder then joins the fan-out here.
static LATE_PROMETHEUS: OnceLock<PrometheusRecorder> = OnceLock::new();
/// Whether [`install`] made the global recorder.
static OTLP_ON: OnceLock<()> = OnceLock::new();

/// Installs the global recorder: the OpenTelemetry bridge, plus Prometheus once added.
pub fn install(provider: &SdkMeterProvider) -> Result<()> {
    let recorder = FanoutBuilder::default()
        .add_recorder(Bridge::new(provider.meter("kvlake")))
        .add_recorder(LatePrometheus)
        .build();
    metrics::set_global_recorder(recorder)
        .map_err(|e| anyhow!("cannot install the metrics recorder: {e}"))?;
    let _ = OTLP_ON.set(());
    Ok(())
}

/// Makes `recorder` receive every metric: beside the OTLP bridge when OTLP is on,
/// as the global recorder otherwise.
pub fn install_prometheus(recorder: PrometheusRecorder) -> Result<()> {
    if OTLP_ON.get().is_some() {
        LATE_PROMETHEUS
            .set(recorder)
            .map_err(|_| anyhow!("the Prometheus recorder is already installed"))
    } else {
        metrics::set_global_recorder(recorder)
            .map_err(|e| anyhow!("cannot install the metrics recorder: {e}"))
    }
}

/// Forwards to the Prometheus recorder once there is one.
#[derive(Debug)]
struct LatePrometheus;

impl metrics::Recorder for LatePrometheus {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        if let Some(p) = LATE_PROMETHEUS.get() {
            p.describe_counter(key, unit, description);
        }
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        if let Some(p) = LATE_PROMETHEUS.get() {
            p.describe_gauge(key, unit, description);
        }
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        if let Some(p) = LATE_PROMETHEUS.get() {
            p.describe_histogram(key, unit, description);
        }
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        LATE_PROMETHEUS
            .get()
            .map_or_else(Counter::noop, |p| p.register_counter(key, metadata))
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        LATE_PROMETHEUS
            .get()
            .map_or_else(Gauge::noop, |p| p.register_gauge(key, metadata))
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        LATE_PROMETHEUS
            .get()
            .map_or_else(Histogram::noop, |p| p.register_histogram(key, metadata))
    }
}

/// A description given through `metrics::describe_*`.
#[derive(Debug, Clone)]
struct Description {
    unit: Option<Unit>,
    text: SharedString,
}

/// `metrics` → OpenTelemetry instruments. The facade registers a handle at every
/// `counter!(...)` call (once per batch here); instruments are built once per name and
/// handles once per name and labels, so the SDK sees one instrument per metric.
#[derive(Debug)]
struct Bridge {
    meter: Meter,
    descriptions: Mutex<HashMap<String, Description>>,
    counters: Mutex<HashMap<Key, Counter>>,
    gauges: Mutex<HashMap<Key, Gauge>>,
    histograms: Mutex<HashMap<Key, Histogram>>,
    counter_instruments: Mutex<HashMap<String, opentelemetry::metrics::Counter<u64>>>,
    gauge_instruments: Mutex<HashMap<String, opentelemetry::metrics::Gauge<f64>>>,
    histogram_instruments: Mutex<HashMap<String, opentelemetry::metrics::Histogram<f64>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn attributes(key: &Key) -> Vec<KeyValue> {
    key.labels()
        .map(|l| KeyValue::new(l.key().to_string(), l.value().to_string()))
        .collect()
}

impl Bridge {
    fn new(meter: Meter) -> Self {
        Bridge {
            meter,
            descriptions: Mutex::default(),
            counters: Mutex::default(),
            gauges: Mutex::default(),
            histograms: Mutex::default(),
            counter_instruments: Mutex::default(),
            gauge_instruments: Mutex::default(),
            histogram_instruments: Mutex::default(),
        }
    }

    fn describe(&self, key: KeyName, unit: Option<Unit>, text: SharedString) {
        lock(&self.descriptions).insert(key.as_str().to_string(), Description { unit, text });
    }

    fn description(&self, name: &str) -> (Option<String>, Option<String>) {
        lock(&self.descriptions)
            .get(name)
            .map_or((None, None), |d| {
                (
                    d.unit.map(|u| u.as_canonical_label().to_string()),
                    Some(d.text.to_string()),
                )
            })
    }
}

impl metrics::Recorder for Bridge {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> Counter {
        if let Some(c) = lock(&self.counters).get(key) {
            return c.clone();
        }
        let name = key.name().to_string();
        let instrument = lock(&self.counter_instruments)
            .entry(name.clone())
            .or_insert_with(|| {
                let (unit, text) = self.description(&name);
                let mut b = self.meter.u64_counter(name.clone());
                if let Some(u) = unit {
                    b = b.with_unit(u);
                }
                if let Some(t) = text {
                    b = b.with_description(t);
                }
                b.build()
            })
            .clone();
        let handle = Counter::from_arc(Arc::new(OtelCounter {
            instrument,
            attributes: attributes(key),
        }));
        lock(&self.counters)
            .entry(key.clone())
            .or_insert(handle)
            .clone()
    }

    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> Gauge {
        if let Some(g) = lock(&self.gauges).get(key) {
            return g.clone();
        }
        let name = key.name().to_string();
        let instrument = lock(&self.gauge_instruments)
            .entry(name.clone())
            .or_insert_with(|| {
                let (unit, text) = self.description(&name);
                let mut b = self.meter.f64_gauge(name.clone());
                if let Some(u) = unit {
                    b = b.with_unit(u);
                }
                if let Some(t) = text {
                    b = b.with_description(t);
                }
                b.build()
            })
            .clone();
        let handle = Gauge::from_arc(Arc::new(OtelGauge {
            instrument,
            attributes: attributes(key),
            value: Mutex::new(0.0),
        }));
        lock(&self.gauges)
            .entry(key.clone())
            .or_insert(handle)
            .clone()
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> Histogram {
        if let Some(h) = lock(&self.histograms).get(key) {
            return h.clone();
        }
        let name = key.name().to_string();
        let instrument = lock(&self.histogram_instruments)
            .entry(name.clone())
            .or_insert_with(|| {
                let (unit, text) = self.description(&name);
                let mut b = self.meter.f64_histogram(name.clone());
                // The histograms here are durations in seconds: the same buckets as /metrics
                // (OpenTelemetry's defaults are for milliseconds).
                if unit.as_deref() == Some("s") {
                    b = b.with_boundaries(SECONDS_BUCKETS.to_vec());
                }
                if let Some(u) = unit {
                    b = b.with_unit(u);
                }
                if let Some(t) = text {
                    b = b.with_description(t);
                }
                b.build()
            })
            .clone();
        let handle = Histogram::from_arc(Arc::new(OtelHistogram {
            instrument,
            attributes: attributes(key),
        }));
        lock(&self.histograms)
            .entry(key.clone())
            .or_insert(handle)
            .clone()
    }
}

struct OtelCounter {
    instrument: opentelemetry::metrics::Counter<u64>,
    attributes: Vec<KeyValue>,
}

impl CounterFn for OtelCounter {
    fn increment(&self, value: u64) {
        self.instrument.add(value, &self.attributes);
    }
    fn absolute(&self, _value: u64) {
        // OpenTelemetry counters only add; kvlake never sets a counter's absolute value.
    }
}

struct OtelGauge {
    instrument: opentelemetry::metrics::Gauge<f64>,
    attributes: Vec<KeyValue>,
    /// OpenTelemetry gauges only take absolute values: increments are applied here.
    value: Mutex<f64>,
}

impl GaugeFn for OtelGauge {
    fn increment(&self, value: f64) {
        let mut v = lock(&self.value);
        *v += value;
        self.instrument.record(*v, &self.attributes);
    }
    fn decrement(&self, value: f64) {
        self.increment(-value);
    }
    fn set(&self, value: f64) {
        *lock(&self.value) = value;
        self.instrument.record(value, &self.attributes);
    }
}

struct OtelHistogram {
    instrument: opentelemetry::metrics::Histogram<f64>,
    attributes: Vec<KeyValue>,
}

impl HistogramFn for OtelHistogram {
    fn record(&self, value: f64) {
        self.instrument.record(value, &self.attributes);
    }
}
