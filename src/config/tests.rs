use super::*;

fn err(text: &str) -> String {
    Config::parse(text).unwrap_err().to_string()
}

#[test]
fn empty_file_gives_documented_defaults() {
    let c = Config::parse("").unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.executor.strategy, Strategy::Workers);
    assert_eq!(c.model.max_seq_length, 256);
    assert_eq!(c.batching.max_wait, Duration::ZERO);
    assert!(c.auth.api_keys.is_empty());
}

#[test]
fn shipped_presets_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let is_preset = path.extension().is_some_and(|e| e == "toml")
            && path.file_name().is_some_and(|n| n != "knowledge_base.toml");
        if is_preset {
            Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
        }
    }
    assert!(
        seen >= 5,
        "expected default.toml and one preset per strategy"
    );
}

#[test]
fn unknown_key_is_named() {
    let e = err("[batching]\nmax_batch_sise = 4\n");
    assert!(e.contains("max_batch_sise"), "{e}");
}

#[test]
fn unknown_section_is_named() {
    let e = err("[batcher]\nmax_batch_size = 4\n");
    assert!(e.contains("batcher"), "{e}");
}

#[test]
fn wrong_type_is_named() {
    let e = err("[executor]\nsessions = \"two\"\n");
    assert!(e.contains("sessions"), "{e}");
}

#[test]
fn impossible_values_name_their_key() {
    let cases = [
        ("[executor]\nstrategy = \"threads\"\n", "executor.strategy"),
        (
            "[executor]\nparallelism = \"fixed\"\nsessions = 0\n",
            "executor.sessions",
        ),
        (
            "[batching]\nmax_batch_size = 0\n",
            "batching.max_batch_size",
        ),
        (
            "[batching]\nmax_batch_tokens = 10\n",
            "batching.max_batch_tokens",
        ),
        ("[batching]\nmax_wait_ms = -1.0\n", "batching.max_wait_ms"),
        ("[model]\nvariant = \"fp16\"\n", "model.variant"),
        ("[server]\nlisten = \"localhost\"\n", "server.listen"),
        ("[chat]\nthreshold = 12.0\n", "chat.threshold"),
        ("[chat]\nkeyword_weight = -0.5\n", "chat.keyword_weight"),
        (
            "[chat]\nout_of_scope_margin = nan\n",
            "chat.out_of_scope_margin",
        ),
        ("[chat]\nfallback = \" \"\n", "chat.fallback"),
        ("[auth]\napi_keys = [\"short\"]\n", "auth.api_keys"),
        (
            "[limits]\nmax_inputs = 20\n[batching]\nqueue_capacity = 10\n",
            "limits.max_inputs",
        ),
        (
            "[limits]\ndefault_deadline_ms = 5000\nmax_deadline_ms = 1000\n",
            "limits.default_deadline_ms",
        ),
    ];
    for (text, key) in cases {
        let e = err(text);
        assert!(e.contains(key), "{text:?} gave {e}");
    }
}

#[test]
fn fractional_max_wait_is_kept() {
    let c = Config::parse("[batching]\nmax_wait_ms = 2.5\n").unwrap();
    assert_eq!(c.batching.max_wait, Duration::from_micros(2500));
}

#[test]
fn parallelism_is_elastic_by_default_and_keys_of_the_other_mode_are_refused() {
    let c = Config::parse("").unwrap();
    assert_eq!(c.executor.parallelism, Parallelism::Elastic);
    assert_eq!(c.executor.cores, None, "0 / unset = every CPU");
    let cases = [
        ("[executor]\nsessions = 2\n", "executor.sessions"),
        (
            "[executor]\nintra_op_threads = 2\n",
            "executor.intra_op_threads",
        ),
        (
            "[executor]\nparallelism = \"fixed\"\ncores = 2\n",
            "executor.cores",
        ),
        (
            "[executor]\nparallelism = \"wide\"\n",
            "executor.parallelism",
        ),
        ("[executor]\ncores = 100000\n", "executor.cores"),
    ];
    for (text, key) in cases {
        let e = err(text);
        assert!(e.contains(key), "{text:?} gave {e}");
    }
    let fixed =
        Config::parse("[executor]\nparallelism = \"fixed\"\nsessions = 3\nintra_op_threads = 1\n")
            .unwrap();
    assert_eq!(
        (fixed.executor.parallelism, fixed.executor.sessions),
        (Parallelism::Fixed, 3)
    );
}

#[test]
fn connection_cap_is_auto_by_default_and_accepts_zero_auto_or_a_number() {
    let cap = |text: &str| Config::parse(text).unwrap().server.max_connections;
    assert_eq!(cap(""), ConnectionCap::Auto);
    assert_eq!(cap("[server]\nmax_connections = 0\n"), ConnectionCap::Auto);
    assert_eq!(
        cap("[server]\nmax_connections = \"auto\"\n"),
        ConnectionCap::Auto
    );
    assert_eq!(
        cap("[server]\nmax_connections = 64\n"),
        ConnectionCap::Fixed(64)
    );
    let per_client = |text: &str| {
        Config::parse(text)
            .unwrap()
            .server
            .max_connections_per_client
    };
    assert_eq!(per_client(""), None);
    assert_eq!(
        per_client("[server]\nmax_connections_per_client = 0\n"),
        None
    );
    assert_eq!(
        per_client("[server]\nmax_connections_per_client = 8\n"),
        Some(8)
    );
    let e = err("[server]\nmax_connections = \"many\"\n");
    assert!(
        e.contains("server.max_connections") && e.contains("many"),
        "{e}"
    );
    let e = err("[server]\nmax_connections = 2000000\n");
    assert!(e.contains("server.max_connections"), "{e}");
}

#[test]
fn connection_cap_override_takes_a_bare_word() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
    let c = Config::load_with_overrides(&path, &["server.max_connections=auto".into()]).unwrap();
    assert_eq!(c.server.max_connections, ConnectionCap::Auto);
    let c = Config::load_with_overrides(&path, &["server.max_connections=5".into()]).unwrap();
    assert_eq!(c.server.max_connections, ConnectionCap::Fixed(5));
}
