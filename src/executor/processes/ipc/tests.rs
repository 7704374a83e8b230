use super::*;

/// A request in a comparable form (`Batch` has no `PartialEq`).
fn parts(request: &Request) -> (Option<Setup>, usize, Vec<Vec<u32>>) {
    match request {
        Request::Setup(s) => (Some(s.clone()), 0, Vec::new()),
        Request::Batch { width, batch } => (None, *width, batch.rows.clone()),
    }
}

fn round_trip_request(request: &Request) -> Request {
    let (mut wire, mut buf) = (Vec::new(), Vec::new());
    let n = request.write(&mut wire, &mut buf).unwrap();
    assert_eq!(n, wire.len());
    Request::read(&mut wire.as_slice(), &mut buf).unwrap()
}

fn round_trip_reply(reply: &Reply) -> Reply {
    let (mut wire, mut buf) = (Vec::new(), Vec::new());
    let n = reply.write(&mut wire, &mut buf).unwrap();
    let (back, read) = Reply::read(&mut wire.as_slice(), &mut buf).unwrap();
    assert_eq!((n, read), (wire.len(), wire.len()));
    back
}

#[test]
fn batches_and_vectors_survive_the_wire() {
    let batch = Batch {
        rows: vec![
            vec![101, 2023, 102],
            vec![101, u32::MAX, 7, 8, 102],
            vec![1],
        ],
    };
    let request = Request::Batch { width: 4, batch };
    assert_eq!(parts(&round_trip_request(&request)), parts(&request));
    let reply = Reply::Vectors {
        compute: Duration::from_micros(1234),
        vectors: vec![vec![0.5, -1.25, f32::MIN_POSITIVE], vec![3.0, 0.0, -0.0]],
    };
    assert_eq!(round_trip_reply(&reply), reply);
    let empty = Reply::Vectors {
        compute: Duration::ZERO,
        vectors: Vec::new(),
    };
    assert_eq!(round_trip_reply(&empty), empty);
}

#[test]
fn the_batch_encoding_is_compact() {
    // 16 rows of 20 tokens: tag, width, rows, 16 lengths, 320 ids, plus the length prefix.
    let batch = Batch {
        rows: vec![vec![7; 20]; 16],
    };
    let (mut wire, mut buf) = (Vec::new(), Vec::new());
    let n = Request::Batch { width: 1, batch }
        .write(&mut wire, &mut buf)
        .unwrap();
    assert_eq!(n, 4 + 1 + 4 + 4 + 16 * 4 + 320 * 4);
}

#[test]
fn setup_hello_and_failures_survive_the_wire() {
    let setup = Request::Setup(Setup {
        model_dir: "models/m".into(),
        variant: "int8".into(),
        max_seq_length: 256,
        ort_library: "/lib/libonnxruntime.so".into(),
        widths: vec![1, 2],
        inter_op_threads: 1,
        intra_op_spinning: false,
        nice: 10,
    });
    assert_eq!(parts(&round_trip_request(&setup)), parts(&setup));
    for reply in [
        Reply::Hello(Hello {
            pid: 42,
            rss_bytes: 1 << 30,
            onnxruntime: "1.22.0".into(),
        }),
        Reply::LoadFailed("model file not found".into()),
        Reply::BatchFailed {
            panicked: true,
            message: "boom".into(),
        },
    ] {
        assert_eq!(round_trip_reply(&reply), reply);
    }
}

#[test]
fn truncated_and_corrupt_frames_are_errors_not_panics() {
    let request = Request::Batch {
        width: 1,
        batch: Batch {
            rows: vec![vec![1, 2, 3]],
        },
    };
    let (mut wire, mut buf) = (Vec::new(), Vec::new());
    request.write(&mut wire, &mut buf).unwrap();
    for cut in 0..wire.len() {
        let err = Request::read(&mut &wire[..cut], &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}");
    }
    // A length prefix that lies about the rows inside.
    let mut lying = wire.clone();
    lying[9] = 200;
    let err = Request::read(&mut lying.as_slice(), &mut buf).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    // An absurd frame length is refused before anything is allocated.
    let huge = [0xff, 0xff, 0xff, 0xff, BATCH];
    let err = Request::read(&mut huge.as_slice(), &mut buf).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let unknown = [1, 0, 0, 0, 99];
    assert!(Reply::read(&mut unknown.as_slice(), &mut buf).is_err());
}
