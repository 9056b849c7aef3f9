//! The in-memory store, its prefixed view and store files, and the pause/resume/cancel gate.
#![cfg(not(target_arch = "wasm32"))]

use std::future::Future;
use std::task::{Context, Poll, Waker};

use bitnet_core::ModelFiles;
use bitnet_pipeline::{Control, MemoryStore, PipelineError, Prefixed, RunState, Store, StoreFiles};

#[test]
fn memory_store_and_its_prefixed_view() {
    let s = MemoryStore::new();
    pollster::block_on(async {
        s.put("a.json", b"1").await.unwrap();
        let t = Prefixed::new(&s, "train");
        t.append("metrics.jsonl", b"x\n").await.unwrap();
        t.append("metrics.jsonl", b"y\n").await.unwrap();
        t.put("checkpoint-2.safetensors", b"c").await.unwrap();
        assert_eq!(
            s.get("train/metrics.jsonl").await.unwrap().unwrap(),
            b"x\ny\n"
        );
        assert_eq!(
            t.list("checkpoint-").await.unwrap(),
            ["checkpoint-2.safetensors"]
        );
        assert_eq!(s.list("").await.unwrap().len(), 3);
        t.remove("checkpoint-2.safetensors").await.unwrap();
        t.remove("never-there").await.unwrap();
        assert!(!t.exists("checkpoint-2.safetensors").await.unwrap());
        assert_eq!(t.display("m"), "memory:train/m");
        let files = StoreFiles::open(&s, "train").await.unwrap();
        assert_eq!(files.names(), ["metrics.jsonl"]);
        assert_eq!(files.read_all("metrics.jsonl").await.unwrap(), b"x\ny\n");
    });
}

#[test]
fn a_paused_gate_waits_until_resumed_and_a_cancel_ends_it() {
    let c = Control::new();
    assert!(pollster::block_on(c.between_steps()).is_ok());
    c.pause();
    let mut cx = Context::from_waker(Waker::noop());
    let mut gate = Box::pin(c.between_steps());
    assert!(gate.as_mut().poll(&mut cx).is_pending());
    c.resume();
    assert!(matches!(gate.as_mut().poll(&mut cx), Poll::Ready(Ok(()))));
    c.pause();
    c.cancel();
    assert!(matches!(
        pollster::block_on(c.between_steps()),
        Err(PipelineError::Cancelled)
    ));
    c.resume(); // a cancelled job stays cancelled
    assert_eq!(c.state(), RunState::Cancelled);
}
