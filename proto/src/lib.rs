//! Berth's gRPC contracts: one package per service plus shared types.
//!
//! The `.proto` files under `berth/` are the source of truth; this crate only
//! compiles them. Every service also serves `grpc.health.v1` and reflection, for
//! which [`FILE_DESCRIPTOR_SET`] carries the encoded descriptors.

#![allow(clippy::all, missing_docs)]

/// Encoded `FileDescriptorSet` of every Berth proto, for tonic-reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("berth_descriptor");

pub mod types {
    pub mod v1 {
        tonic::include_proto!("berth.types.v1");

        /// Key/value lists (labels, options) as the JSON objects Docker's API
        /// and Berth's stores write them: one conversion for every service.
        pub mod kv {
            use super::KeyValue;
            use serde_json::Value;

            /// A JSON object's members, in key order; values that are not
            /// strings are kept as their JSON text. Anything else: none.
            pub fn from_object(v: &Value) -> Vec<KeyValue> {
                v.as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| KeyValue {
                                key: k.clone(),
                                value: v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()),
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            }

            /// A typed string map's members, in key order.
            pub fn from_map(m: &std::collections::BTreeMap<String, String>) -> Vec<KeyValue> {
                m.iter().map(|(k, v)| KeyValue { key: k.clone(), value: v.clone() }).collect()
            }

            /// [`from_object`] of JSON text (as stored); invalid text is none.
            pub fn from_text(text: &str) -> Vec<KeyValue> {
                serde_json::from_str::<Value>(text).map(|v| from_object(&v)).unwrap_or_default()
            }

            /// The pairs as a JSON object (a later duplicate key wins).
            pub fn to_object(pairs: &[KeyValue]) -> Value {
                Value::Object(pairs.iter().map(|kv| (kv.key.clone(), Value::String(kv.value.clone()))).collect())
            }

            /// [`to_object`] as JSON text, for a store.
            pub fn to_text(pairs: &[KeyValue]) -> String {
                to_object(pairs).to_string()
            }
        }
    }
}
pub mod image {
    pub mod v1 {
        tonic::include_proto!("berth.image.v1");

        /// Credentials are never printed: not in logs, not in panics.
        impl std::fmt::Debug for RegistryAuth {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("RegistryAuth")
                    .field("username", &self.username)
                    .field("server_address", &self.server_address)
                    .field("password", &if self.password.is_empty() { "" } else { "<redacted>" })
                    .field("identity_token", &if self.identity_token.is_empty() { "" } else { "<redacted>" })
                    .field("registry_token", &if self.registry_token.is_empty() { "" } else { "<redacted>" })
                    .finish()
            }
        }
    }
}
pub mod runtime {
    pub mod v1 {
        tonic::include_proto!("berth.runtime.v1");
    }
}
pub mod network {
    pub mod v1 {
        tonic::include_proto!("berth.network.v1");
    }
}
pub mod volume {
    pub mod v1 {
        tonic::include_proto!("berth.volume.v1");
    }
}
pub mod events {
    pub mod v1 {
        tonic::include_proto!("berth.events.v1");
    }
}
