//! What a component's bytes say about it at their top level, read without
//! the modules inside it (a Python or JavaScript component's are
//! megabytes): the names it imports and exports, and the tools its
//! `producers` section says built it. The engine chooser reads the names;
//! the loader reads the tools for the one serving default that depends on
//! them: how instances are reused.

use wasmparser::{Chunk, KnownCustom, Parser, Payload};

use crate::config::Isolation;
use crate::world::World;

/// The `processed-by` name componentize-js writes into what it builds.
const COMPONENTIZE_JS: &str = "ComponentizeJS";

/// A component's top level.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outline {
    /// Names it imports.
    pub imports: Vec<String>,
    /// Names it exports.
    pub exports: Vec<String>,
    /// The tools named under `processed-by` in its top-level `producers`
    /// section.
    pub processed_by: Vec<String>,
}

impl Outline {
    /// The outline of the component in `bytes`; `None` if it cannot be
    /// parsed.
    pub fn read(bytes: &[u8]) -> Option<Self> {
        let mut outline = Self::default();
        let mut parser = Parser::new(0);
        let mut rest = bytes;
        loop {
            let Chunk::Parsed { consumed, payload } = parser.parse(rest, true).ok()? else {
                return None;
            };
            rest = &rest[consumed..];
            match payload {
                // The parser has stepped over a nested one; the input must too.
                Payload::ModuleSection {
                    unchecked_range, ..
                }
                | Payload::ComponentSection {
                    unchecked_range, ..
                } => {
                    let len = usize::try_from(unchecked_range.end - unchecked_range.start).ok()?;
                    rest = rest.get(len..)?;
                }
                Payload::ComponentImportSection(reader) => {
                    for import in reader {
                        outline.imports.push(import.ok()?.name.name.to_string());
                    }
                }
                Payload::ComponentExportSection(reader) => {
                    for export in reader {
                        outline.exports.push(export.ok()?.name.name.to_string());
                    }
                }
                Payload::CustomSection(reader) => {
                    if let KnownCustom::Producers(producers) = reader.as_known() {
                        outline.read_producers(producers)?;
                    }
                }
                Payload::End(_) => return Some(outline),
                _ => {}
            }
        }
    }

    fn read_producers(&mut self, producers: wasmparser::ProducersSectionReader) -> Option<()> {
        for field in producers {
            let field = field.ok()?;
            if field.name != "processed-by" {
                continue;
            }
            for value in field.values {
                self.processed_by.push(value.ok()?.name.to_string());
            }
        }
        Some(())
    }

    /// How instances are reused when the component's settings do not say.
    ///
    /// A `wasi:http@0.2` proxy built by componentize-js answers through
    /// StarlingMonkey's fetch event, which answers once per instance: a
    /// second request on the same one fails with "respondWith can't be
    /// called twice". So it gets a fresh instance per request, as
    /// `wasmtime serve` gives every p2 proxy. Its bytes do not tell a
    /// fetch-event handler from one exporting `incomingHandler` itself
    /// (the same imports and exports): both get the safe default, and
    /// `isolation = "reuse"` gives the second kind warm instances back.
    /// Everything else keeps the host's default, reuse.
    pub fn default_isolation(&self) -> Option<Isolation> {
        let built_by_js = self.processed_by.iter().any(|t| t == COMPONENTIZE_JS);
        let proxy = World::of_exports(self.exports.clone()) == World::Proxy;
        (built_by_js && proxy).then_some(Isolation::PerRequest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component exporting `export`, with a nested core module to step
    /// over and, when `tools` are given, a top-level `producers` section
    /// naming them under `processed-by`.
    fn component(export: &str, tools: &[(&str, &str)]) -> Vec<u8> {
        let wat = format!(
            "(component (core module $m (func (export \"f\")))\n\
             (instance $e) (export \"{export}\" (instance $e)))"
        );
        let mut bytes = wat::parse_str(&wat).expect("valid component text");
        if !tools.is_empty() {
            bytes.extend(custom_section("producers", &producers(tools)));
        }
        bytes
    }

    /// A `producers` section's payload with one field, `processed-by`.
    fn producers(tools: &[(&str, &str)]) -> Vec<u8> {
        let mut payload = vec![1];
        payload.extend(string("processed-by"));
        payload.push(tools.len() as u8);
        for (name, version) in tools {
            payload.extend(string(name));
            payload.extend(string(version));
        }
        payload
    }

    fn custom_section(name: &str, payload: &[u8]) -> Vec<u8> {
        let mut content = string(name);
        content.extend(payload);
        let mut section = vec![0, content.len() as u8];
        section.extend(content);
        section
    }

    fn string(text: &str) -> Vec<u8> {
        let mut bytes = vec![text.len() as u8];
        bytes.extend(text.as_bytes());
        bytes
    }

    const P2: &str = "wasi:http/incoming-handler@0.2.10";

    #[test]
    fn the_producers_section_names_the_tools_that_built_it() {
        let bytes = component(
            P2,
            &[("wit-component", "0.259.0"), ("ComponentizeJS", "0.23.0")],
        );
        let outline = Outline::read(&bytes).expect("parses");
        assert_eq!(outline.exports, [P2]);
        assert_eq!(outline.processed_by, ["wit-component", "ComponentizeJS"]);
    }

    #[test]
    fn a_componentize_js_proxy_gets_a_fresh_instance_per_request() {
        let bytes = component(P2, &[("ComponentizeJS", "0.23.0")]);
        let outline = Outline::read(&bytes).unwrap();
        assert_eq!(outline.default_isolation(), Some(Isolation::PerRequest));
    }

    #[test]
    fn other_proxies_and_services_keep_the_hosts_default() {
        let rust = component(P2, &[("wit-component", "0.259.0")]);
        assert_eq!(Outline::read(&rust).unwrap().default_isolation(), None);
        let unlabelled = component(P2, &[]);
        assert_eq!(
            Outline::read(&unlabelled).unwrap().default_isolation(),
            None
        );
        // Not a p2 proxy: the fetch-event rule does not reach it.
        let p3 = component("wasi:http/handler@0.3.0", &[("ComponentizeJS", "0.23.0")]);
        assert_eq!(Outline::read(&p3).unwrap().default_isolation(), None);
    }

    #[test]
    fn garbage_has_no_outline() {
        assert_eq!(Outline::read(b"\0asm garbage"), None);
    }
}
