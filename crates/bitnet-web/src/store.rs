//! The pipeline's [`Store`] on the browser's Origin Private File System: a run's files live in a
//! folder of the page's private storage, so a checkpoint written in a tab survives a reload (a
//! fresh pipeline that opens the same folder continues the run). Nothing leaves the machine.
//!
//! A put writes through `createWritable()`, which the browser commits atomically on `close()`: a
//! reader sees the old file or the new one, never a part. Keys with `/` are nested folders. The
//! OPFS calls are made through `js_sys::Reflect`, so no unstable web-sys bindings are needed.

use bitnet_pipeline::{Store, StoreError};
use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// A folder of the origin's private file system.
pub struct OpfsStore {
    folder: String,
    dir: JsValue,
}

/// `obj.method(args…)`.
fn call(obj: &JsValue, method: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    let f: js_sys::Function = Reflect::get(obj, &method.into())?.dyn_into()?;
    f.apply(obj, &args.iter().collect::<Array>())
}

/// `await obj.method(args…)`.
async fn call_async(obj: &JsValue, method: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    let p: js_sys::Promise = call(obj, method, args)?.dyn_into()?;
    JsFuture::from(p).await
}

fn options(key: &str, value: bool) -> JsValue {
    let o = Object::new();
    let _ = Reflect::set(&o, &key.into(), &value.into());
    o.into()
}

/// "NotFoundError", "TypeMismatchError", … of a DOMException.
fn error_name(e: &JsValue) -> String {
    Reflect::get(e, &"name".into())
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or_default()
}

fn message(e: &JsValue) -> String {
    let msg = Reflect::get(e, &"message".into())
        .ok()
        .and_then(|v| v.as_string());
    match msg {
        Some(m) => format!("{}: {m}", error_name(e)),
        None => format!("{e:?}"),
    }
}

impl OpfsStore {
    /// Opens (creating it when missing) the folder `folder` of the origin's private storage.
    pub async fn open(folder: &str) -> Result<OpfsStore, StoreError> {
        let fail = |e: JsValue| StoreError::new(format!("opfs:{folder}"), message(&e));
        let window = web_sys::window().ok_or_else(|| StoreError::new("opfs", "no window"))?;
        let storage = Reflect::get(&window.navigator(), &"storage".into()).map_err(fail)?;
        if storage.is_undefined() {
            return Err(StoreError::new(
                format!("opfs:{folder}"),
                "this browser has no storage manager (navigator.storage); use a secure (https or localhost) page",
            ));
        }
        let root = call_async(&storage, "getDirectory", &[])
            .await
            .map_err(fail)?;
        let mut dir = root;
        for part in folder.split('/').filter(|p| !p.is_empty()) {
            dir = call_async(
                &dir,
                "getDirectoryHandle",
                &[part.into(), options("create", true)],
            )
            .await
            .map_err(fail)?;
        }
        Ok(OpfsStore {
            folder: folder.to_string(),
            dir,
        })
    }

    /// Removes the folder `folder` and everything in it.
    pub async fn delete(folder: &str) -> Result<(), StoreError> {
        let fail = |e: JsValue| StoreError::new(format!("opfs:{folder}"), message(&e));
        let window = web_sys::window().ok_or_else(|| StoreError::new("opfs", "no window"))?;
        let storage = Reflect::get(&window.navigator(), &"storage".into()).map_err(fail)?;
        let root = call_async(&storage, "getDirectory", &[])
            .await
            .map_err(fail)?;
        match call_async(
            &root,
            "removeEntry",
            &[folder.into(), options("recursive", true)],
        )
        .await
        {
            Ok(_) => Ok(()),
            Err(e) if error_name(&e) == "NotFoundError" => Ok(()),
            Err(e) => Err(fail(e)),
        }
    }

    fn fail(&self, key: &str) -> impl Fn(JsValue) -> StoreError + '_ {
        let what = self.display(key);
        move |e| StoreError::new(what.clone(), message(&e))
    }

    /// The folder holding `key` and the file's name in it; None when a folder is missing and
    /// `create` is false.
    async fn parent(
        &self,
        key: &str,
        create: bool,
    ) -> Result<Option<(JsValue, String)>, StoreError> {
        let mut parts: Vec<&str> = key.split('/').filter(|p| !p.is_empty()).collect();
        let name = parts
            .pop()
            .ok_or_else(|| StoreError::new(self.display(key), "an empty key"))?
            .to_string();
        let mut dir = self.dir.clone();
        for part in parts {
            match call_async(
                &dir,
                "getDirectoryHandle",
                &[part.into(), options("create", create)],
            )
            .await
            {
                Ok(d) => dir = d,
                Err(e) if !create && error_name(&e) == "NotFoundError" => return Ok(None),
                Err(e) => return Err(self.fail(key)(e)),
            }
        }
        Ok(Some((dir, name)))
    }

    async fn file_handle(&self, key: &str, create: bool) -> Result<Option<JsValue>, StoreError> {
        let Some((dir, name)) = self.parent(key, create).await? else {
            return Ok(None);
        };
        match call_async(
            &dir,
            "getFileHandle",
            &[name.into(), options("create", create)],
        )
        .await
        {
            Ok(h) => Ok(Some(h)),
            Err(e)
                if !create
                    && matches!(
                        error_name(&e).as_str(),
                        "NotFoundError" | "TypeMismatchError"
                    ) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.fail(key)(e)),
        }
    }

    /// Writes `bytes` at `position` (None: replace the whole file) and commits.
    async fn write(&self, key: &str, bytes: &[u8], append: bool) -> Result<(), StoreError> {
        let fail = self.fail(key);
        let handle = self
            .file_handle(key, true)
            .await?
            .ok_or_else(|| StoreError::new(self.display(key), "cannot create"))?;
        let writable = call_async(
            &handle,
            "createWritable",
            &[options("keepExistingData", append)],
        )
        .await
        .map_err(&fail)?;
        let data: JsValue = Uint8Array::from(bytes).into();
        if append {
            let file = call_async(&handle, "getFile", &[]).await.map_err(&fail)?;
            let size = Reflect::get(&file, &"size".into()).map_err(&fail)?;
            let op = Object::new();
            let _ = Reflect::set(&op, &"type".into(), &"write".into());
            let _ = Reflect::set(&op, &"position".into(), &size);
            let _ = Reflect::set(&op, &"data".into(), &data);
            call_async(&writable, "write", &[op.into()])
                .await
                .map_err(&fail)?;
        } else {
            call_async(&writable, "write", &[data])
                .await
                .map_err(&fail)?;
        }
        call_async(&writable, "close", &[]).await.map_err(&fail)?;
        Ok(())
    }

    /// Every file key under `dir` (whose keys start with `rel`).
    async fn walk(
        &self,
        dir: JsValue,
        rel: String,
        out: &mut Vec<String>,
    ) -> Result<(), StoreError> {
        let mut stack = vec![(dir, rel)];
        while let Some((dir, rel)) = stack.pop() {
            let fail = self.fail(&rel);
            let iter = call(&dir, "entries", &[]).map_err(&fail)?;
            loop {
                let next = call_async(&iter, "next", &[]).await.map_err(&fail)?;
                if Reflect::get(&next, &"done".into())
                    .map_err(&fail)?
                    .is_truthy()
                {
                    break;
                }
                let pair: Array = Reflect::get(&next, &"value".into())
                    .map_err(&fail)?
                    .dyn_into()
                    .map_err(&fail)?;
                let name = pair.get(0).as_string().unwrap_or_default();
                let handle = pair.get(1);
                let kind = Reflect::get(&handle, &"kind".into())
                    .ok()
                    .and_then(|k| k.as_string())
                    .unwrap_or_default();
                if kind == "directory" {
                    stack.push((handle, format!("{rel}{name}/")));
                } else {
                    out.push(format!("{rel}{name}"));
                }
            }
        }
        Ok(())
    }
}

impl Store for OpfsStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let fail = self.fail(key);
        let Some(handle) = self.file_handle(key, false).await? else {
            return Ok(None);
        };
        let file = call_async(&handle, "getFile", &[]).await.map_err(&fail)?;
        let buf = call_async(&file, "arrayBuffer", &[]).await.map_err(&fail)?;
        Ok(Some(Uint8Array::new(&buf).to_vec()))
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let fail = self.fail(key);
        let Some(handle) = self.file_handle(key, false).await? else {
            return Ok(None);
        };
        let file = call_async(&handle, "getFile", &[]).await.map_err(&fail)?;
        let size = Reflect::get(&file, &"size".into()).map_err(&fail)?;
        Ok(size.as_f64().map(|n| n as u64))
    }

    /// Reads only `start..end` (`Blob.slice`), so a model kept in the store loads tensor by tensor.
    async fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Vec<u8>, StoreError> {
        let fail = self.fail(key);
        let handle = self
            .file_handle(key, false)
            .await?
            .ok_or_else(|| StoreError::new(self.display(key), "missing"))?;
        let file = call_async(&handle, "getFile", &[]).await.map_err(&fail)?;
        let part = call(
            &file,
            "slice",
            &[(start as f64).into(), (end as f64).into()],
        )
        .map_err(&fail)?;
        let buf = call_async(&part, "arrayBuffer", &[]).await.map_err(&fail)?;
        let bytes = Uint8Array::new(&buf).to_vec();
        if bytes.len() as u64 != end.saturating_sub(start) {
            return Err(StoreError::new(
                self.display(key),
                format!("range {start}..{end} is beyond its end"),
            ));
        }
        Ok(bytes)
    }

    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.write(key, bytes, false).await
    }

    async fn append(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.write(key, bytes, true).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        self.walk(self.dir.clone(), String::new(), &mut out).await?;
        out.retain(|k| k.starts_with(prefix));
        out.sort();
        Ok(out)
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        let Some((dir, name)) = self.parent(key, false).await? else {
            return Ok(());
        };
        match call_async(&dir, "removeEntry", &[name.into()]).await {
            Ok(_) => Ok(()),
            Err(e) if error_name(&e) == "NotFoundError" => Ok(()),
            Err(e) => Err(self.fail(key)(e)),
        }
    }

    fn display(&self, key: &str) -> String {
        format!("opfs:{}/{key}", self.folder)
    }
}
