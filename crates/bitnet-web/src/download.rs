//! Handing bytes to the user as a file: a Blob, an object URL and a click on a download link; the
//! bytes never leave the page. PNG export draws the chart's SVG onto a canvas first.

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

fn js_err(what: &str) -> impl Fn(JsValue) -> String + '_ {
    move |e| {
        format!(
            "{what}: {}",
            e.as_string().unwrap_or_else(|| format!("{e:?}"))
        )
    }
}

fn blob_of(bytes: &[u8], mime: &str) -> Result<web_sys::Blob, String> {
    let array = js_sys::Uint8Array::from(bytes);
    let parts = js_sys::Array::of1(&array);
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type(mime);
    web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &opts)
        .map_err(js_err("cannot make the file"))
}

fn click_link(name: &str, blob: &web_sys::Blob) -> Result<(), String> {
    let url = web_sys::Url::create_object_url_with_blob(blob).map_err(js_err("object URL"))?;
    let document = web_sys::window()
        .and_then(|w| w.document())
        .ok_or("no document")?;
    let a: web_sys::HtmlAnchorElement = document
        .create_element("a")
        .map_err(js_err("link"))?
        .unchecked_into();
    a.set_href(&url);
    a.set_download(name);
    a.click();
    // The browser has started the download; the URL can go after it has read the blob.
    let revoke = Closure::once_into_js(move || {
        let _ = web_sys::Url::revoke_object_url(&url);
    });
    if let Some(w) = web_sys::window() {
        let _ =
            w.set_timeout_with_callback_and_timeout_and_arguments_0(revoke.unchecked_ref(), 60_000);
    }
    Ok(())
}

/// Saves `bytes` as a file called `name`.
pub fn save(name: &str, bytes: &[u8], mime: &str) -> Result<(), String> {
    click_link(name, &blob_of(bytes, mime)?)
}

/// Saves an SVG document as a PNG of twice its size (for slides), drawn by the browser.
pub fn save_png(name: &str, svg: &str, width: f64, height: f64) -> Result<(), String> {
    let document = web_sys::window()
        .and_then(|w| w.document())
        .ok_or("no document")?;
    let canvas: web_sys::HtmlCanvasElement = document
        .create_element("canvas")
        .map_err(js_err("canvas"))?
        .unchecked_into();
    let scale = 2.0;
    canvas.set_width((width * scale) as u32);
    canvas.set_height((height * scale) as u32);
    let image = web_sys::HtmlImageElement::new().map_err(js_err("image"))?;
    let url = web_sys::Url::create_object_url_with_blob(&blob_of(svg.as_bytes(), "image/svg+xml")?)
        .map_err(js_err("object URL"))?;
    let name = name.to_string();
    let img = image.clone();
    let src = url.clone();
    let onload = Closure::once_into_js(move || {
        let _ = web_sys::Url::revoke_object_url(&src);
        let Ok(Some(ctx)) = canvas.get_context("2d") else {
            return;
        };
        let ctx: web_sys::CanvasRenderingContext2d = ctx.unchecked_into();
        let _ = ctx.draw_image_with_html_image_element_and_dw_and_dh(
            &img,
            0.0,
            0.0,
            width * scale,
            height * scale,
        );
        let done = Closure::once_into_js(move |blob: Option<web_sys::Blob>| {
            if let Some(blob) = blob {
                let _ = click_link(&name, &blob);
            }
        });
        let _ = canvas.to_blob(done.unchecked_ref());
    });
    image.set_onload(Some(onload.unchecked_ref()));
    image.set_src(&url);
    Ok(())
}
