//! What every contract version's binding module holds, written once: the
//! host's `storage` and `log` imports linked under that version's names, and
//! the calls of its `scanner-source` and `findings-sink` exports in the
//! host's [`scanner_contract`] types.
//!
//! A version's module (`v0_2`, `v0_3`) declares its `generated` bindings
//! and its `convert` functions (where versions really differ: 0.3.0 added
//! fields), then invokes [`version_module!`], whose paths resolve in that
//! module. A new version is one more module of the same three parts.

/// The body of a contract version's binding module; see the module docs.
macro_rules! version_module {
    () => {
        use crate::bindings::imports::LogLevel;
        use crate::state::HostState;
        use generated::sink::exports::scanner::plugin::findings_sink as wsink;
        use generated::source::exports::scanner::plugin::scanner_source as wsrc;
        use generated::source::scanner::plugin::log as wlog;
        use generated::source::scanner::plugin::storage as wstorage;
        use generated::source::scanner::plugin::types as wt;
        use scanner_contract as contract;
        use wasmtime::Store;
        use wasmtime::component::{InstancePre, Linker};

        /// Links this version's `scanner:plugin` imports (types, storage, log)
        /// into `linker`, under their versioned names.
        pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
            use wasmtime::component::HasSelf;
            wt::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
            wstorage::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
            wlog::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
            Ok(())
        }

        impl wt::Host for HostState {}

        impl wstorage::Host for HostState {
            async fn get(&mut self, key: String) -> Option<Vec<u8>> {
                self.storage_get(&key)
            }

            async fn set(
                &mut self,
                key: String,
                value: Vec<u8>,
            ) -> Result<(), wstorage::StorageError> {
                self.storage_set(&key, &value).map_err(|e| match e {
                    contract::KvError::TooLarge(m) => wstorage::StorageError::TooLarge(m),
                    contract::KvError::QuotaExceeded(m) => wstorage::StorageError::QuotaExceeded(m),
                    contract::KvError::Unavailable(m) => wstorage::StorageError::Unavailable(m),
                })
            }

            async fn delete(&mut self, key: String) {
                self.storage_delete(&key);
            }

            async fn list_prefix(&mut self, prefix: String) -> Vec<String> {
                self.storage_list_prefix(&prefix)
            }
        }

        impl wlog::Host for HostState {
            async fn log(
                &mut self,
                level: wlog::Level,
                message: String,
                fields: Vec<(String, String)>,
            ) {
                let level = match level {
                    wlog::Level::Trace => LogLevel::Trace,
                    wlog::Level::Debug => LogLevel::Debug,
                    wlog::Level::Info => LogLevel::Info,
                    wlog::Level::Warn => LogLevel::Warn,
                    wlog::Level::Error => LogLevel::Error,
                };
                self.plugin_log(level, &message, &fields);
            }
        }

        /// A component's `scanner-source` export, pre-linked.
        pub(crate) struct SourcePre(generated::source::SourcePluginPre<HostState>);

        impl SourcePre {
            /// `pre`'s source half, if the component exports `scanner-source`.
            pub(crate) fn new(pre: InstancePre<HostState>) -> Option<SourcePre> {
                generated::source::SourcePluginPre::new(pre)
                    .ok()
                    .map(SourcePre)
            }

            /// A new instance in `store`.
            pub(crate) async fn instantiate(
                &self,
                store: &mut Store<HostState>,
            ) -> wasmtime::Result<Source> {
                self.0.instantiate_async(store).await.map(Source)
            }
        }

        /// An instance's `scanner-source` export. Its calls take and answer the
        /// host's types; what the plugin answered is the inner `Result`.
        pub(crate) struct Source(generated::source::SourcePlugin);

        impl Source {
            fn guest(&self) -> &wsrc::Guest {
                self.0.scanner_plugin_scanner_source()
            }

            /// `describe`.
            pub(crate) async fn describe(
                &self,
                store: &mut Store<HostState>,
            ) -> wasmtime::Result<contract::PluginInfo> {
                let info = self.guest().call_describe(store).await?;
                Ok(convert::plugin_info(info))
            }

            /// `configure`.
            pub(crate) async fn configure(
                &self,
                store: &mut Store<HostState>,
                settings: &contract::Settings,
            ) -> wasmtime::Result<Result<contract::Configured, contract::PluginError>> {
                let settings = convert::settings(settings);
                let answer = self.guest().call_configure(store, &settings).await?;
                Ok(answer
                    .map(convert::configured)
                    .map_err(convert::plugin_error))
            }

            /// `test`.
            pub(crate) async fn test(
                &self,
                store: &mut Store<HostState>,
            ) -> wasmtime::Result<Result<contract::ConnectionInfo, contract::PluginError>> {
                let answer = self.guest().call_test(store).await?;
                Ok(answer
                    .map(convert::connection_info)
                    .map_err(convert::plugin_error))
            }

            /// `fetch-findings`.
            pub(crate) async fn fetch_findings(
                &self,
                store: &mut Store<HostState>,
                request: &contract::PageRequest,
            ) -> wasmtime::Result<Result<contract::FindingPage, contract::PluginError>> {
                let request = convert::page_request(request);
                let answer = self.guest().call_fetch_findings(store, &request).await?;
                Ok(answer
                    .map(convert::finding_page)
                    .map_err(convert::plugin_error))
            }

            /// `fetch-page`.
            pub(crate) async fn fetch_page(
                &self,
                store: &mut Store<HostState>,
                request: &contract::PageRequest,
            ) -> wasmtime::Result<Result<contract::Page, contract::PluginError>> {
                let request = convert::page_request(request);
                let answer = self.guest().call_fetch_page(store, &request).await?;
                Ok(answer.map(convert::page).map_err(convert::plugin_error))
            }

            /// `map-findings`: one entry per entry the plugin answered, which the
            /// caller checks against the records it sent.
            pub(crate) async fn map_findings(
                &self,
                store: &mut Store<HostState>,
                records: Vec<contract::RawRecord>,
            ) -> wasmtime::Result<Vec<Result<Option<contract::Finding>, contract::PluginError>>>
            {
                let records: Vec<_> = records.into_iter().map(convert::raw_record_out).collect();
                let answer = self.guest().call_map_findings(store, &records).await?;
                Ok(answer
                    .into_iter()
                    .map(|r| {
                        r.map(|f| f.map(convert::finding))
                            .map_err(convert::plugin_error)
                    })
                    .collect())
            }
        }

        /// A component's `findings-sink` export, pre-linked.
        pub(crate) struct SinkPre(generated::sink::SinkPluginPre<HostState>);

        impl SinkPre {
            /// `pre`'s sink half, if the component exports `findings-sink`.
            pub(crate) fn new(pre: InstancePre<HostState>) -> Option<SinkPre> {
                generated::sink::SinkPluginPre::new(pre).ok().map(SinkPre)
            }

            /// A new instance in `store`.
            pub(crate) async fn instantiate(
                &self,
                store: &mut Store<HostState>,
            ) -> wasmtime::Result<Sink> {
                self.0.instantiate_async(store).await.map(Sink)
            }
        }

        /// An instance's `findings-sink` export, in the host's types.
        pub(crate) struct Sink(generated::sink::SinkPlugin);

        impl Sink {
            fn guest(&self) -> &wsink::Guest {
                self.0.scanner_plugin_findings_sink()
            }

            /// `describe`.
            pub(crate) async fn describe(
                &self,
                store: &mut Store<HostState>,
            ) -> wasmtime::Result<contract::PluginInfo> {
                let info = self.guest().call_describe(store).await?;
                Ok(convert::plugin_info(info))
            }

            /// `configure`.
            pub(crate) async fn configure(
                &self,
                store: &mut Store<HostState>,
                settings: &contract::Settings,
            ) -> wasmtime::Result<Result<contract::Configured, contract::PluginError>> {
                let settings = convert::settings(settings);
                let answer = self.guest().call_configure(store, &settings).await?;
                Ok(answer
                    .map(convert::configured)
                    .map_err(convert::plugin_error))
            }

            /// `test`.
            pub(crate) async fn test(
                &self,
                store: &mut Store<HostState>,
            ) -> wasmtime::Result<Result<contract::ConnectionInfo, contract::PluginError>> {
                let answer = self.guest().call_test(store).await?;
                Ok(answer
                    .map(convert::connection_info)
                    .map_err(convert::plugin_error))
            }

            /// `export`.
            pub(crate) async fn export(
                &self,
                store: &mut Store<HostState>,
                batch: &contract::ExportBatch,
            ) -> wasmtime::Result<Result<contract::ExportReceipt, contract::PluginError>> {
                let batch = convert::export_batch(batch);
                let answer = self.guest().call_export(store, &batch).await?;
                Ok(answer
                    .map(convert::export_receipt_in)
                    .map_err(convert::plugin_error))
            }

            /// `export-status`.
            pub(crate) async fn export_status(
                &self,
                store: &mut Store<HostState>,
                receipt: &contract::ExportReceipt,
            ) -> wasmtime::Result<Result<contract::ExportState, contract::PluginError>> {
                let receipt = convert::export_receipt_out(receipt);
                let answer = self.guest().call_export_status(store, &receipt).await?;
                Ok(answer
                    .map(convert::export_state)
                    .map_err(convert::plugin_error))
            }
        }
    };
}

pub(crate) use version_module;
