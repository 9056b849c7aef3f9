//! Handing the run's files to the user: one file of the store, a folder as a ZIP archive, the
//! trained model repacked as trit5, the demo model's files; a failure is shown where the user looks.

use bitnet_core::packed::PackedModel;
use bitnet_pipeline::Store;
use bitnet_pipeline::run::TRAIN_FOLDER;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::source::ModelSource;
use crate::state::Studio;

/// Shows a failed download (or export) where the user looks.
pub fn report(st: Studio, r: Result<(), String>) {
    st.download_error.set(r.err());
}

/// The bytes of `key` in the store; an error when there are none.
pub(super) async fn stored(st: Studio, key: &str) -> Result<Vec<u8>, String> {
    let store = st.store()?;
    store
        .get(key)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{} is not in the browser's storage", store.display(key)))
}

/// Downloads `key` of the store as `name`.
pub fn download(st: Studio, key: String, name: String) {
    spawn_local(async move {
        let r = async {
            let bytes = stored(st, &key).await?;
            let mime = if name.ends_with(".json") || name.ends_with(".jsonl") {
                "application/json"
            } else {
                "application/octet-stream"
            };
            crate::download::save(&name, &bytes, mime)
        }
        .await;
        report(st, r);
    });
}

/// Downloads the files under `folder` of the store as one ZIP archive.
pub fn download_zip(st: Studio, folder: String, name: String) {
    spawn_local(async move {
        let r = async {
            let store = st.store()?;
            let zip = bitnet_pipeline::store::zip_folder(&*store, &folder)
                .await
                .map_err(|e| e.to_string())?;
            crate::download::save(&name, &zip, "application/zip")
        }
        .await;
        report(st, r);
    });
}

/// Downloads the trained model repacked 5 codes per byte (the same codes and scales).
pub fn download_trit5(st: Studio) {
    spawn_local(async move {
        let r = async {
            let key = format!("{TRAIN_FOLDER}/{}", bitnet_pipeline::load::PACKED_FILE);
            let bytes = stored(st, &key).await?;
            let name = st.store()?.display(&key);
            let p = PackedModel::parse(&name, &bytes).map_err(|e| e.to_string())?;
            let trit5 = p
                .repack(bitnet_core::Packing::Trit5)
                .map_err(|e| e.to_string())?;
            crate::download::save(
                "model.trit5.safetensors",
                &trit5,
                "application/octet-stream",
            )
        }
        .await;
        report(st, r);
    });
}

/// Downloads the demo model's files (config.json, tokenizer.json, model.safetensors) as one ZIP
/// archive, to run the same model with the `bitnet` CLI.
pub fn download_demo_model(st: Studio) {
    let r = ModelSource::demo().and_then(|source| {
        let ModelSource::Demo(files) = source else {
            return Err("the demo model is not built in".to_string());
        };
        let list: Vec<(String, Vec<u8>)> = files
            .0
            .into_iter()
            .map(|(name, bytes)| {
                (
                    format!("{}/{name}", bitnet_pipeline::demo::DEMO_MODEL_FOLDER),
                    bytes,
                )
            })
            .collect();
        let zip = bitnet_core::zip::store_zip(&list).map_err(|e| e.to_string())?;
        crate::download::save("demo-model.zip", &zip, "application/zip")
    });
    report(st, r);
}

/// Downloads the trained model exported as `format` (GGUF for llama.cpp, transformers' packed
/// BitNet folder as a ZIP archive); what the export cannot express is refused with the reason.
pub fn download_export(st: Studio, format: bitnet_pipeline::export::Format) {
    spawn_local(async move {
        let r = async {
            let key = format!("{TRAIN_FOLDER}/{}", bitnet_pipeline::load::PACKED_FILE);
            let bytes = stored(st, &key).await?;
            let name = st.store()?.display(&key);
            let chat = base_chat_template(st).await;
            let e = bitnet_pipeline::export::export_packed(&name, &bytes, format, chat.as_deref())
                .map_err(|e| e.to_string())?;
            if format.is_file() {
                let file = format!("model.{}.gguf", format.name().trim_start_matches("gguf-"));
                let bytes = &e.files[bitnet_pipeline::export::GGUF_FILE];
                return crate::download::save(&file, bytes, "application/octet-stream");
            }
            let list: Vec<(String, Vec<u8>)> = e
                .files
                .into_iter()
                .map(|(n, b)| (format!("{}/{n}", format.name()), b))
                .collect();
            let zip = bitnet_core::zip::store_zip(&list).map_err(|e| e.to_string())?;
            crate::download::save(&format!("{}.zip", format.name()), &zip, "application/zip")
        }
        .await;
        report(st, r);
    });
}

/// The chat template of the model the run was trained from (its tokenizer_config.json), for the
/// GGUF export's metadata.
async fn base_chat_template(st: Studio) -> Option<String> {
    use bitnet_core::ModelFiles;
    let source = st.source.get_untracked()?;
    source.size("tokenizer_config.json")?;
    let bytes = source.read_all("tokenizer_config.json").await.ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("chat_template")?.as_str().map(str::to_string)
}
