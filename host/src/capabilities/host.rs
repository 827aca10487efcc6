//! `cello:component/host`: logging and an async sleep, available to every
//! Cello app component.

use std::fmt::Write as _;
use std::time::Duration;

use wasmtime::component::{Accessor, HasSelf};

use crate::bindings::cello::component::host::{self, Level};
use crate::guest_log::{GuestLine, MAX_LINE};
use crate::instances::state::InstanceState;

impl crate::bindings::cello::component::types::Host for InstanceState {}

impl host::Host for InstanceState {
    fn log(&mut self, level: Level, mut message: String) -> wasmtime::Result<()> {
        let component = &*self.owner.component;
        if message.len() > MAX_LINE {
            let cut = message.floor_char_boundary(MAX_LINE);
            let more = message.len() - cut;
            message.truncate(cut);
            let _ = write!(message, " … ({more} more bytes cut)");
        }
        if !self.owner.log_budget.take(component, message.len()) {
            return Ok(());
        }
        let (route, request_id) = self.current_call().unzip();
        let (route, request_id) = (route.as_deref(), request_id.as_deref());
        match level {
            Level::Trace => {
                tracing::trace!(target: "guest", component, route, request_id, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "guest", component, route, request_id, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "guest", component, route, request_id, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "guest", component, route, request_id, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "guest", component, route, request_id, "{message}")
            }
        }
        if let Some(kept) = &self.owner.guest_logs {
            kept.push(GuestLine {
                component: component.into(),
                level: match level {
                    Level::Trace => "trace",
                    Level::Debug => "debug",
                    Level::Info => "info",
                    Level::Warn => "warn",
                    Level::Error => "error",
                }
                .into(),
                message,
                request_id: request_id.map(str::to_string),
            });
        }
        Ok(())
    }
}

impl<U> host::HostWithStore<U> for HasSelf<InstanceState> {
    async fn sleep(_accessor: &Accessor<U, Self>, ms: u32) -> wasmtime::Result<()> {
        tokio::time::sleep(Duration::from_millis(ms.into())).await;
        Ok(())
    }
}
