//! The GraphQL side: the schema (the part of Wiz's that public clients
//! use), parsing and validation with `apollo-compiler`, variable coercion,
//! and a small executor that projects selections over JSON objects.

use apollo_compiler::ast::Value as AstValue;
use apollo_compiler::executable::{Field, Selection, SelectionSet};
use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// The schema, written from the fields public clients select
/// (shared/wiz-api.md §3). Types the sources do not show in full carry
/// the fields seen; a client selecting anything else gets a validation
/// error, as it would from Wiz.
pub const SCHEMA: &str = r#"
scalar DateTime
scalar JSON

enum VulnerabilitySeverity { NONE LOW MEDIUM HIGH CRITICAL INFORMATIONAL }
enum FindingStatus { OPEN IN_PROGRESS RESOLVED REJECTED }
enum VulnerableAssetObjectType {
  VIRTUAL_MACHINE SERVERLESS CONTAINER_IMAGE CONTAINER REPOSITORY REPOSITORY_BRANCH IDE ENDPOINT
  DATA_WORKLOAD WEB_SERVICE COMPUTE_INSTANCE_GROUP DATABASE DB_SERVER MAP_REDUCE_CLUSTER
  KUBERNETES_CLUSTER BUCKET NETWORK_ADDRESS WORKSTATION FIREWALL NETWORK_APPLIANCE
  MESSAGING_SERVICE VIRTUAL_MACHINE_IMAGE DATA_WORKFLOW
}
enum OrderDirection { ASC DESC }
enum VulnerabilityFindingOrderField { CREATED_AT RELATED_ISSUE_SEVERITY TECHNOLOGY_END_OF_LIFE_DATE }
enum DurationFilterValueUnit { DurationFilterValueUnitDays DurationFilterValueUnitHours }

input DateFilter { after: DateTime before: DateTime inLast: DurationFilter beforeLast: DurationFilter }
input DurationFilter { amount: Int! unit: DurationFilterValueUnit! }
input StringListFilter { equals: [String!] notEquals: [String!] }
input BooleanFilter { equals: Boolean }
input TagsFilter { containsAny: [String!] containsAll: [String!] }

input VulnerabilityFindingFilters {
  status: [FindingStatus!]
  severity: [VulnerabilitySeverity!]
  vendorSeverity: [VulnerabilitySeverity!]
  assetType: [VulnerableAssetObjectType!]
  codeToCloudPipelineStage: [String!]
  isDefaultBranch: BooleanFilter
  projectId: [String!]
  projectIdV2: StringListFilter
  assetId: [String!]
  assetTags: TagsFilter
  vulnerabilityExternalId: [String!]
  detectionMethod: [String!]
  hasFix: Boolean
  hasExploit: Boolean
  updatedAt: DateFilter
  firstSeenAt: DateFilter
  resolvedAt: DateFilter
}
input VulnerabilityFindingOrder { field: VulnerabilityFindingOrderField direction: OrderDirection }

type PageInfo { hasNextPage: Boolean! endCursor: String }

type Project { id: ID! name: String slug: String businessUnit: String isFolder: Boolean }

interface VulnerableAssetBase {
  id: ID name: String type: String providerUniqueId: String cloudPlatform: String region: String
  cloudProviderURL: String status: String subscriptionName: String subscriptionExternalId: String
  subscriptionId: String tags: JSON nativeType: String externalId: String
}
type VulnerableAssetVirtualMachine implements VulnerableAssetBase {
  id: ID name: String type: String providerUniqueId: String cloudPlatform: String region: String
  cloudProviderURL: String status: String subscriptionName: String subscriptionExternalId: String
  subscriptionId: String tags: JSON nativeType: String externalId: String
  operatingSystem: String ipAddresses: [String] imageName: String imageId: String
}
type VulnerableAssetServerless implements VulnerableAssetBase {
  id: ID name: String type: String providerUniqueId: String cloudPlatform: String region: String
  cloudProviderURL: String status: String subscriptionName: String subscriptionExternalId: String
  subscriptionId: String tags: JSON nativeType: String externalId: String
  runtime: String
}
type ContainerRegistryRef { vertexId: String name: String }
type VulnerableAssetContainerImage implements VulnerableAssetBase {
  id: ID name: String type: String providerUniqueId: String cloudPlatform: String region: String
  cloudProviderURL: String status: String subscriptionName: String subscriptionExternalId: String
  subscriptionId: String tags: JSON nativeType: String externalId: String
  imageId: String imageTags: [String] tagReferences: [String] scanSource: String
  registry: ContainerRegistryRef repository: ContainerRegistryRef
}
type VulnerableAssetContainer implements VulnerableAssetBase {
  id: ID name: String type: String providerUniqueId: String cloudPlatform: String region: String
  cloudProviderURL: String status: String subscriptionName: String subscriptionExternalId: String
  subscriptionId: String tags: JSON nativeType: String externalId: String
  ImageExternalId: String VmExternalId: String ServerlessContainer: Boolean PodNamespace: String
  PodName: String NodeName: String
}
type VulnerableAssetRepositoryBranch implements VulnerableAssetBase {
  id: ID name: String type: String providerUniqueId: String cloudPlatform: String region: String
  cloudProviderURL: String status: String subscriptionName: String subscriptionExternalId: String
  subscriptionId: String tags: JSON nativeType: String externalId: String
  repositoryId: String repositoryName: String isUsedOnPrem: Boolean resourceGroupExternalId: String
}
type VulnerableAssetCommon implements VulnerableAssetBase {
  id: ID name: String type: String providerUniqueId: String cloudPlatform: String region: String
  cloudProviderURL: String status: String subscriptionName: String subscriptionExternalId: String
  subscriptionId: String tags: JSON nativeType: String externalId: String
}
union VulnerableAsset = VulnerableAssetVirtualMachine | VulnerableAssetServerless
  | VulnerableAssetContainerImage | VulnerableAssetContainer | VulnerableAssetRepositoryBranch
  | VulnerableAssetCommon

type VulnerabilityFinding {
  id: ID! name: String vulnerabilityExternalId: String CVEDescription: String
  CVSSSeverity: String severity: String vendorSeverity: String nvdSeverity: String
  weightedSeverity: String score: Float exploitabilityScore: Float impactScore: Float
  status: String firstDetectedAt: DateTime lastDetectedAt: DateTime resolvedAt: DateTime
  updatedAt: DateTime publishedDate: DateTime description: String remediation: String
  detailedName: String version: String fixedVersion: String recommendedVersion: String
  locationPath: String detectionMethod: String portalUrl: String link: String
  hasExploit: Boolean hasCisaKevExploit: Boolean hasFix: Boolean isHighProfileThreat: Boolean
  validatedInRuntime: Boolean epssSeverity: String epssPercentile: Float epssProbability: Float
  dataSourceName: String resolutionReason: String projects: [Project]
  vulnerableAsset: VulnerableAsset relatedIssueAnalytics: VulnerabilityFindingRelatedIssueAnalytics
}
type VulnerabilityFindingRelatedIssueAnalytics {
  issueCount: Int! criticalSeverityCount: Int! highSeverityCount: Int! mediumSeverityCount: Int!
  lowSeverityCount: Int! informationalSeverityCount: Int!
}
type VulnerabilityFindingConnection {
  nodes: [VulnerabilityFinding!]! pageInfo: PageInfo! totalCount: Int!
}

input VersionControlResourceFilters { type: [String!] id: [String!] }
type VersionControlRepository { id: ID! name: String url: String }
type VersionControlResource {
  id: ID! name: String type: String cloudPlatform: String providerID: String
  repository: VersionControlRepository
}
type VersionControlResourceConnection {
  nodes: [VersionControlResource!]! pageInfo: PageInfo! totalCount: Int!
}

type SecurityScanUpload { id: ID! url: String! systemActivityId: ID! }
type RequestSecurityScanUploadPayload { upload: SecurityScanUpload! }
type EnrichmentIntegrationStats { incoming: Int! handled: Int! }
type EnrichmentIntegrationUnresolvedAssets { count: Int! ids: [String!] }
type SystemActivityEnrichmentIntegrationResult {
  dataSources: EnrichmentIntegrationStats findings: EnrichmentIntegrationStats
  events: EnrichmentIntegrationStats tags: EnrichmentIntegrationStats
  unresolvedAssets: EnrichmentIntegrationUnresolvedAssets
}
union SystemActivityResult = SystemActivityEnrichmentIntegrationResult
type SystemActivityEnrichmentIntegrationContext { fileUploadId: String }
union SystemActivityContext = SystemActivityEnrichmentIntegrationContext
type SystemActivity {
  id: ID! status: String statusInfo: String createdAt: DateTime startedAt: DateTime endedAt: DateTime
  result: SystemActivityResult context: SystemActivityContext
}

type Query {
  requestSecurityScanUpload(filename: String!): RequestSecurityScanUploadPayload
  systemActivity(id: ID!): SystemActivity
  vulnerabilityFindings(filterBy: VulnerabilityFindingFilters, first: Int, after: String,
    orderBy: VulnerabilityFindingOrder): VulnerabilityFindingConnection!
  versionControlResources(filterBy: VersionControlResourceFilters, first: Int, after: String):
    VersionControlResourceConnection!
}
"#;

/// The schema, parsed and validated once.
pub fn schema() -> &'static Valid<Schema> {
    static SCHEMA_ONCE: OnceLock<Valid<Schema>> = OnceLock::new();
    SCHEMA_ONCE.get_or_init(|| {
        // The schema is a constant of this crate; a broken one is a bug
        // caught by every test.
        Schema::parse_and_validate(SCHEMA, "wiz.graphql").expect("the simulator's schema is valid")
    })
}

/// A GraphQL error as Wiz answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct GqlError {
    /// HTTP status to answer.
    pub status: u16,
    /// `errors[].message`.
    pub message: String,
    /// `errors[].extensions.code`.
    pub code: &'static str,
    /// `errors[].extensions.name` (the variable).
    pub name: Option<String>,
}

impl GqlError {
    /// The response body.
    pub fn body(&self) -> Value {
        let mut ext = serde_json::json!({"code": self.code});
        if let Some(n) = &self.name {
            ext["name"] = n.clone().into();
        }
        serde_json::json!({"data": null, "errors": [{"message": self.message, "extensions": ext}]})
    }
}

/// Parsed and validated documents by query text: clients send the same text
/// for every page.
#[derive(Default)]
pub struct DocumentCache {
    docs: Mutex<HashMap<String, Arc<Valid<ExecutableDocument>>>>,
}

impl DocumentCache {
    /// The validated document for `query`, or the validation error.
    pub fn get(&self, query: &str) -> Result<Arc<Valid<ExecutableDocument>>, GqlError> {
        if let Some(doc) = self
            .docs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(query)
        {
            return Ok(doc.clone());
        }
        let doc = ExecutableDocument::parse_and_validate(schema(), query, "query.graphql")
            .map_err(|e| {
                let message = e
                    .errors
                    .iter()
                    .map(|d| d.to_json().message)
                    .collect::<Vec<_>>()
                    .join("; ");
                GqlError {
                    status: 400,
                    message,
                    code: "GRAPHQL_VALIDATION_FAILED",
                    name: None,
                }
            })?;
        let doc = Arc::new(doc);
        let mut docs = self.docs.lock().unwrap_or_else(|p| p.into_inner());
        // Bound the cache: a hostile client could send endless variants.
        if docs.len() > 256 {
            docs.clear();
        }
        docs.insert(query.to_string(), doc.clone());
        Ok(doc)
    }
}

/// Coerce the request's variables to the operation's declared types.
pub fn coerce_variables(
    doc: &Valid<ExecutableDocument>,
    operation_name: Option<&str>,
    variables: &Value,
) -> Result<Map<String, Value>, GqlError> {
    let operation = doc.operations.get(operation_name).map_err(|e| GqlError {
        status: 400,
        message: e.message().to_string(),
        code: "BAD_USER_INPUT",
        name: None,
    })?;
    let raw: apollo_compiler::response::JsonMap = match variables {
        Value::Null => Default::default(),
        v => serde_json::from_value(v.clone()).map_err(|_| GqlError {
            status: 400,
            message: "variables must be an object".into(),
            code: "BAD_USER_INPUT",
            name: None,
        })?,
    };
    let coerced = apollo_compiler::request::coerce_variable_values(schema(), operation, &raw)
        .map_err(|e| {
            let message = e.message().to_string();
            // Name the variable the way Wiz's error does.
            let name = operation
                .variables
                .iter()
                .map(|v| v.name.to_string())
                .find(|n| {
                    message.contains(&format!("${n}"))
                        || message.contains(&format!("'{n}'"))
                        || message.contains(&format!("`{n}`"))
                });
            GqlError {
                status: 400,
                message: format!(
                    "invalid type for variable: '{}'",
                    name.clone().unwrap_or_default()
                ),
                code: "VALIDATION_INVALID_TYPE_VARIABLE",
                name,
            }
        })?;
    serde_json::to_value(coerced.into_inner())
        .ok()
        .and_then(|v| v.as_object().cloned())
        .ok_or_else(|| GqlError {
            status: 500,
            message: "variables could not be read back".into(),
            code: "INTERNAL",
            name: None,
        })
}

/// The value of an argument, with variables substituted.
pub fn argument(value: &AstValue, vars: &Map<String, Value>) -> Value {
    match value {
        AstValue::Null => Value::Null,
        AstValue::Enum(n) => Value::String(n.to_string()),
        AstValue::Variable(n) => vars.get(n.as_str()).cloned().unwrap_or(Value::Null),
        AstValue::String(s) => Value::String(s.clone()),
        AstValue::Float(f) => f.try_to_f64().map(Value::from).unwrap_or(Value::Null),
        AstValue::Int(i) => i.try_to_i32().map(Value::from).unwrap_or(Value::Null),
        AstValue::Boolean(b) => Value::Bool(*b),
        AstValue::List(items) => Value::Array(items.iter().map(|i| argument(i, vars)).collect()),
        AstValue::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), argument(v, vars)))
                .collect(),
        ),
    }
}

fn type_matches(typename: &str, condition: &str) -> bool {
    condition == typename
        || (condition == "VulnerableAssetBase" && typename.starts_with("VulnerableAsset"))
        || condition == "VulnerableAsset"
}

/// Whether a selection set asks for `name` at its top level (following
/// fragments), so costly fields are computed only when selected.
pub fn selects(doc: &ExecutableDocument, set: &SelectionSet, name: &str) -> bool {
    set.selections.iter().any(|s| match s {
        Selection::Field(f) => f.name == name,
        Selection::InlineFragment(i) => selects(doc, &i.selection_set, name),
        Selection::FragmentSpread(s) => doc
            .fragments
            .get(&s.fragment_name)
            .is_some_and(|f| selects(doc, &f.selection_set, name)),
    })
}

/// The sub-selection of field `name` in `set`, if selected.
pub fn field_selection<'a>(
    doc: &'a ExecutableDocument,
    set: &'a SelectionSet,
    name: &str,
) -> Option<&'a SelectionSet> {
    for s in &set.selections {
        let found = match s {
            Selection::Field(f) if f.name == name => Some(&f.selection_set),
            Selection::Field(_) => None,
            Selection::InlineFragment(i) => field_selection(doc, &i.selection_set, name),
            Selection::FragmentSpread(sp) => doc
                .fragments
                .get(&sp.fragment_name)
                .and_then(|f| field_selection(doc, &f.selection_set, name)),
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// The fields `set` selects on an object of type `typename`, in order,
/// following the fragments whose type condition matches, one per response
/// key. GraphQL merges the sub-selections of a key selected twice; the
/// simulator keeps the first (public clients repeat only leaf fields).
pub fn fields_of<'a>(
    doc: &'a ExecutableDocument,
    set: &'a SelectionSet,
    typename: &str,
    out: &mut Vec<&'a Field>,
) {
    for selection in &set.selections {
        match selection {
            Selection::Field(f) => {
                if !out.iter().any(|o| o.response_key() == f.response_key()) {
                    out.push(f);
                }
            }
            Selection::InlineFragment(i) => {
                if i.type_condition
                    .as_ref()
                    .is_none_or(|c| type_matches(typename, c.as_str()))
                {
                    fields_of(doc, &i.selection_set, typename, out);
                }
            }
            Selection::FragmentSpread(s) => {
                if let Some(frag) = doc.fragments.get(&s.fragment_name)
                    && type_matches(typename, frag.type_condition().as_str())
                {
                    fields_of(doc, &frag.selection_set, typename, out);
                }
            }
        }
    }
}

/// Appends `v` as JSON. Serializing a `Value` into a `Vec` cannot fail.
pub fn write_json(out: &mut Vec<u8>, v: &(impl serde::Serialize + ?Sized)) {
    let _ = serde_json::to_writer(&mut *out, v);
}

/// Writes the projection of `v` (full JSON objects carrying `__typename`)
/// onto `set` as JSON text, without building the projected tree: this is
/// what serves a 500-finding page quickly.
pub fn write_projected(doc: &ExecutableDocument, v: &Value, set: &SelectionSet, out: &mut Vec<u8>) {
    match v {
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_projected(doc, item, set, out);
            }
            out.push(b']');
        }
        Value::Object(map) if !set.selections.is_empty() => {
            let typename = map
                .get("__typename")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let mut fields = Vec::new();
            fields_of(doc, set, typename, &mut fields);
            out.push(b'{');
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(out, f.response_key().as_str());
                out.push(b':');
                if f.name == "__typename" {
                    write_json(out, typename);
                } else {
                    let child = map.get(f.name.as_str()).unwrap_or(&Value::Null);
                    write_projected(doc, child, &f.selection_set, out);
                }
            }
            out.push(b'}');
        }
        other => write_json(out, other),
    }
}

/// The projection of `v` onto `set` as a value (for small answers).
pub fn project_value(doc: &ExecutableDocument, v: &Value, set: &SelectionSet) -> Value {
    let mut out = Vec::new();
    write_projected(doc, v, set, &mut out);
    serde_json::from_slice(&out).unwrap_or(Value::Null)
}
