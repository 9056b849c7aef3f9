//! Lose nothing, accept nothing silently wrong: a resume verifies the checkpoint it continues from
//! (its checksum, and that it was made from this base model and this dataset), falling back from a
//! corrupt newest checkpoint to the one before it with a message.

mod common;

use common::{bitnet, copy_dir, dataset, fixtures, flip_bit, tmp, train_args};

const MANIFEST: &str = "training_manifest.json";

/// `args` with the value of `flag` replaced.
fn with<'a>(args: &[&'a str], flag: &str, value: &'a str) -> Vec<&'a str> {
    let mut out = args.to_vec();
    let at = out.iter().position(|a| *a == flag).unwrap() + 1;
    out[at] = value;
    out
}

#[test]
fn resume_verifies_the_checkpoint_the_base_model_and_the_dataset() {
    let dir = tmp("resume-identity");
    let data = dataset(&dir);
    let model = fixtures().join("llama");
    let out = dir.join("run");
    let mut args = train_args(
        data.to_str().unwrap(),
        out.to_str().unwrap(),
        model.to_str().unwrap(),
        "4",
    );
    args.extend(["--save-steps", "2"]);
    let (ok, _, err) = bitnet(&args);
    assert!(ok, "{err}");
    // As if killed after the checkpoint of step 2: the resumes below have steps left.
    std::fs::remove_file(out.join("checkpoint-4.safetensors")).unwrap();
    std::fs::remove_file(out.join(MANIFEST)).unwrap();
    let ckpt2 = out.join("checkpoint-2.safetensors");
    let before = std::fs::read(&ckpt2).unwrap();

    // Another dataset of the same size: refused, naming the dataset.
    let other_data = dir.join("other.jsonl");
    let text = std::fs::read_to_string(&data)
        .unwrap()
        .replace("sea", "sky");
    std::fs::write(&other_data, text).unwrap();
    let mut again = with(&args, "--dataset", other_data.to_str().unwrap());
    again.push("--resume");
    let (ok, _, err) = bitnet(&again);
    assert!(!ok, "a resume on another dataset must be refused");
    assert!(
        err.contains("checkpoint-2.safetensors") && err.contains("another dataset"),
        "{err}"
    );

    // Another base model of the same shape (one weight differs in its last bit): refused.
    let other_model = dir.join("llama-other");
    copy_dir(&model, &other_model);
    flip_bit(&other_model.join("model.safetensors"), 7);
    let mut again = with(&args, "--base_model", other_model.to_str().unwrap());
    again.push("--resume");
    let (ok, _, err) = bitnet(&again);
    assert!(!ok, "a resume on another base model must be refused");
    assert!(err.contains("other base weights"), "{err}");
    assert_eq!(
        std::fs::read(&ckpt2).unwrap(),
        before,
        "a refused resume changed the checkpoint"
    );

    // Train on to step 4, then corrupt its checkpoint and drop the manifest (a run killed while
    // writing its outputs): the resume falls back to step 2, says why, and ends the run again.
    let mut resume = args.clone();
    resume.push("--resume");
    let (ok, outp, err) = bitnet(&resume);
    assert!(ok && outp.contains("resumed from"), "{outp}{err}");
    let ckpt4 = out.join("checkpoint-4.safetensors");
    let good4 = std::fs::read(&ckpt4).unwrap();
    flip_bit(&ckpt4, 1000);
    std::fs::remove_file(out.join(MANIFEST)).unwrap();
    let (ok, outp, err) = bitnet(&resume);
    let all = format!("{outp}{err}");
    assert!(ok, "{all}");
    assert!(
        all.contains("skipped a corrupt checkpoint")
            && all.contains("checkpoint-4.safetensors")
            && all.contains("checksum mismatch")
            && all.contains("checkpoint-2.safetensors at step 2"),
        "{all}"
    );
    // Training is deterministic: the re-made checkpoint is the one the corruption hit.
    assert_eq!(std::fs::read(&ckpt4).unwrap(), good4);

    // Every checkpoint corrupt: an error naming each, nothing trained.
    flip_bit(&ckpt4, 1000);
    flip_bit(&ckpt2, 1000);
    std::fs::remove_file(out.join(MANIFEST)).unwrap();
    let (ok, _, err) = bitnet(&resume);
    assert!(!ok, "a resume with no sound checkpoint must fail");
    assert!(
        err.contains("no checkpoint")
            && err.contains("checkpoint-2.safetensors")
            && err.contains("checkpoint-4.safetensors")
            && err.contains("--overwrite"),
        "{err}"
    );
}
