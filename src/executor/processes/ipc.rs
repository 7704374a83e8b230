//! The wire between the server and a child: length-prefixed frames over a Unix socket.
//!
//! A frame is `u32 LE length`, then `u8 tag`, then the body. The hot path is binary and
//! copies nothing it does not have to: a batch is its row count, each row's length, then
//! every token id as `u32 LE`; the answer is rows, dimension, then every `f32 LE`. The two
//! messages sent once per child (its setup, its hello) are JSON, for readable errors.
//!
//! Why a socket and not shared memory: a 16-input batch is about 1.5 KB of ids out and 24 KB
//! of vectors back, copied in microseconds, next to a forward pass of milliseconds
//! (`concur_ipc_seconds` measures it). Shared memory would still need a wake-up per batch
//! (a futex or eventfd: the same syscalls), and a child that dies mid-write would leave
//! the shared ring in a state the parent must repair; a socket simply reads EOF.

use crate::engine::Batch;
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::time::Duration;

/// Frames larger than this are refused as corrupt (a 4096 x 512 batch of vectors is 8 MiB).
const MAX_FRAME: usize = 64 << 20;

const SETUP: u8 = 0;
const BATCH: u8 = 1;
const HELLO: u8 = 10;
const LOAD_FAILED: u8 = 11;
const VECTORS: u8 = 12;
const BATCH_FAILED: u8 = 13;

/// What a child needs to load its sessions: sent once, right after it starts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Setup {
    pub model_dir: std::path::PathBuf,
    /// `fp32` or `int8`.
    pub variant: String,
    pub max_seq_length: usize,
    /// The ONNX Runtime library the parent resolved, so the child need not search.
    pub ort_library: std::path::PathBuf,
    /// One session per width, narrowest first.
    pub widths: Vec<usize>,
    pub inter_op_threads: usize,
    pub intra_op_spinning: bool,
    pub nice: i32,
}

/// A child's first answer once its sessions are loaded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Hello {
    pub pid: u32,
    pub rss_bytes: u64,
    pub onnxruntime: String,
}

/// Parent to child.
#[derive(Debug)]
pub enum Request {
    Setup(Setup),
    Batch { width: usize, batch: Batch },
}

/// Child to parent.
#[derive(Debug, PartialEq)]
pub enum Reply {
    Hello(Hello),
    /// Loading failed; the child exits after sending it.
    LoadFailed(String),
    /// One vector per row, and how long the child's forward pass took.
    Vectors {
        compute: Duration,
        vectors: Vec<Vec<f32>>,
    },
    /// The engine returned an error (or panicked) for this batch.
    BatchFailed {
        panicked: bool,
        message: String,
    },
}

/// Starts a frame in `buf` (cleared): room for the length, then the tag.
fn begin(buf: &mut Vec<u8>, tag: u8) {
    buf.clear();
    buf.extend_from_slice(&[0; 4]);
    buf.push(tag);
}

/// Writes the length of the frame in `buf`, then the frame, in one write.
fn send(w: &mut impl Write, buf: &mut [u8]) -> io::Result<usize> {
    let len = u32::try_from(buf.len() - 4).map_err(|_| invalid("frame too large"))?;
    buf[..4].copy_from_slice(&len.to_le_bytes());
    w.write_all(buf)?;
    Ok(buf.len())
}

fn put_u32(buf: &mut Vec<u8>, v: usize) -> io::Result<()> {
    let v = u32::try_from(v).map_err(|_| invalid("value exceeds u32"))?;
    buf.extend_from_slice(&v.to_le_bytes());
    Ok(())
}

fn put_json(buf: &mut Vec<u8>, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(buf, value).map_err(io::Error::other)
}

impl Request {
    /// Encodes into `buf` and writes it; returns the bytes written.
    pub fn write(&self, w: &mut impl Write, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Request::Setup(setup) => {
                begin(buf, SETUP);
                put_json(buf, setup)?;
            }
            Request::Batch { width, batch } => encode_batch(buf, *width, batch)?,
        }
        send(w, buf)
    }

    /// Reads and decodes one request; `buf` is reused between calls.
    pub fn read(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Request> {
        read_frame(r, buf)?;
        let mut c = Cursor(buf);
        match c.u8()? {
            SETUP => Ok(Request::Setup(c.json()?)),
            BATCH => {
                let width = c.u32()? as usize;
                let rows = c.u32()? as usize;
                let lens = (0..rows)
                    .map(|_| c.u32().map(|l| l as usize))
                    .collect::<io::Result<Vec<_>>>()?;
                let rows = lens
                    .into_iter()
                    .map(|len| c.take(len * 4).map(|b| le_words(b, u32::from_le_bytes)))
                    .collect::<io::Result<Vec<_>>>()?;
                c.end()?;
                Ok(Request::Batch {
                    width,
                    batch: Batch { rows },
                })
            }
            tag => Err(invalid(format!("unknown request tag {tag}"))),
        }
    }
}

/// Writes a batch straight from the queued rows (no intermediate `Request`); returns the
/// bytes written.
pub fn write_batch(
    w: &mut impl Write,
    buf: &mut Vec<u8>,
    width: usize,
    batch: &Batch,
) -> io::Result<usize> {
    encode_batch(buf, width, batch)?;
    send(w, buf)
}

fn encode_batch(buf: &mut Vec<u8>, width: usize, batch: &Batch) -> io::Result<()> {
    begin(buf, BATCH);
    buf.reserve(8 + 4 * (batch.rows.len() + batch.real_tokens()));
    put_u32(buf, width)?;
    put_u32(buf, batch.rows.len())?;
    for row in &batch.rows {
        put_u32(buf, row.len())?;
    }
    for id in batch.rows.iter().flatten() {
        buf.extend_from_slice(&id.to_le_bytes());
    }
    Ok(())
}

impl Reply {
    /// Encodes into `buf` and writes it; returns the bytes written.
    pub fn write(&self, w: &mut impl Write, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Reply::Hello(hello) => {
                begin(buf, HELLO);
                put_json(buf, hello)?;
            }
            Reply::LoadFailed(message) => {
                begin(buf, LOAD_FAILED);
                buf.extend_from_slice(message.as_bytes());
            }
            Reply::Vectors { compute, vectors } => {
                begin(buf, VECTORS);
                let dim = vectors.first().map_or(0, Vec::len);
                if vectors.iter().any(|v| v.len() != dim) {
                    return Err(invalid("vectors of different lengths"));
                }
                buf.reserve(20 + 4 * dim * vectors.len());
                let nanos = u64::try_from(compute.as_nanos()).unwrap_or(u64::MAX);
                buf.extend_from_slice(&nanos.to_le_bytes());
                put_u32(buf, vectors.len())?;
                put_u32(buf, dim)?;
                for x in vectors.iter().flatten() {
                    buf.extend_from_slice(&x.to_le_bytes());
                }
            }
            Reply::BatchFailed { panicked, message } => {
                begin(buf, BATCH_FAILED);
                buf.push(u8::from(*panicked));
                buf.extend_from_slice(message.as_bytes());
            }
        }
        send(w, buf)
    }

    /// Reads and decodes one reply; `buf` is reused between calls. Returns the reply and
    /// the bytes read.
    pub fn read(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<(Reply, usize)> {
        read_frame(r, buf)?;
        let bytes = buf.len() + 4;
        let mut c = Cursor(buf);
        let reply = match c.u8()? {
            HELLO => Reply::Hello(c.json()?),
            LOAD_FAILED => Reply::LoadFailed(c.text()),
            VECTORS => {
                let compute = Duration::from_nanos(c.u64()?);
                let rows = c.u32()? as usize;
                let dim = c.u32()? as usize;
                let data = c.take(rows.saturating_mul(dim).saturating_mul(4))?;
                c.end()?;
                let vectors = data
                    .chunks_exact(dim.max(1) * 4)
                    .take(rows)
                    .map(|row| le_words(row, f32::from_le_bytes))
                    .collect::<Vec<_>>();
                let vectors = if dim == 0 {
                    vec![Vec::new(); rows]
                } else {
                    vectors
                };
                Reply::Vectors { compute, vectors }
            }
            BATCH_FAILED => Reply::BatchFailed {
                panicked: c.u8()? != 0,
                message: c.text(),
            },
            tag => return Err(invalid(format!("unknown reply tag {tag}"))),
        };
        Ok((reply, bytes))
    }
}

/// Reads one frame's body into `buf`. EOF before its first byte is `UnexpectedEof`.
fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(invalid(format!("frame of {len} bytes")));
    }
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf)
}

fn le_words<T>(bytes: &[u8], from: fn([u8; 4]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(4)
        .map(|w| from([w[0], w[1], w[2], w[3]]))
        .collect()
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Reads a frame body front to back; every read is bounds-checked.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if n > self.0.len() {
            return Err(invalid("frame ends early"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> io::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> io::Result<u64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    fn json<T: serde::de::DeserializeOwned>(&mut self) -> io::Result<T> {
        let rest = std::mem::take(&mut self.0);
        serde_json::from_slice(rest).map_err(|e| invalid(e.to_string()))
    }

    fn text(&mut self) -> String {
        String::from_utf8_lossy(std::mem::take(&mut self.0)).into_owned()
    }

    fn end(&self) -> io::Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(invalid("trailing bytes in frame"))
        }
    }
}

#[cfg(test)]
mod tests;
