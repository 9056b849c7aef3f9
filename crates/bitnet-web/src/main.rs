//! Entry point of the browser app: mounts the Leptos root component.

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(bitnet_web::app::App);
}
