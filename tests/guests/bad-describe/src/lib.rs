//! A component whose `describe()` traps: the host must skip it, naming the
//! file, and serve the others.

use cello::App;

fn app() -> App {
    panic!("this app cannot describe itself")
}

cello::export_app!(app);
