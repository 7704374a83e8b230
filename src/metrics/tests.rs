//! Unit tests of the metrics registry: start-up work, labels, outcomes.

use super::*;

#[test]
fn startup_work_stays_out_of_request_histograms() {
    let m = Metrics::new("workers", "m");
    {
        let _kb = m.startup_work("knowledge_base");
        m.inference.observe(0.5);
        m.batch_size.observe(8.0);
    }
    assert_eq!(m.inference.inner.get_sample_count(), 0);
    assert_eq!(m.batch_size.inner.get_sample_count(), 0);
    assert!(m.render().contains("concur_startup_seconds{"));
    m.inference.observe(0.5);
    assert_eq!(m.inference.inner.get_sample_count(), 1);
}

#[test]
fn generation_series_name_the_generative_model_and_the_live_strategy() {
    let m = Metrics::with_generative_model("workers", "embedder", "generator");
    m.generation
        .tokens
        .with_label_values(&["continuous", "generated"])
        .inc();
    m.set_strategy("rayon");
    let text = m.render();
    assert!(
        text.contains(
            "concur_generation_tokens_total{kind=\"generated\",model=\"generator\",scheduler=\"continuous\",strategy=\"rayon\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("concur_batch_failures_total{model=\"embedder\",strategy=\"rayon\"} 0"));
    assert!(!text.contains("concur_generation_tokens_total{kind=\"generated\",model=\"embedder\""));
}

#[test]
fn outcomes_follow_the_status() {
    let of = |s| Outcome::of_status(s).as_str();
    assert_eq!(
        [200, 404, 413, 429, 500, 503].map(of),
        [
            "success",
            "client_error",
            "client_error",
            "rejected",
            "server_error",
            "rejected"
        ]
    );
}
