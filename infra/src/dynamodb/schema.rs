//! The table definition, read from `template.yaml` so that the tables tests and the local server create
//! are the table AWS gets.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use serde_norway::Value;

/// The SAM template, compiled in.
pub const TEMPLATE: &str = include_str!("../../../template.yaml");
/// The logical id of the table in the template.
pub const TABLE_RESOURCE: &str = "OrdersTable";

/// Why the template's table could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The template is not what this code expects.
    #[error("template.yaml: {0}")]
    Template(String),
    /// DynamoDB refused.
    #[error("create table")]
    Create(#[source] domain::error::BoxError),
}

/// The table's keys and indexes as the template declares them.
#[derive(Debug, Clone)]
pub struct TableSchema {
    attributes: Vec<AttributeDefinition>,
    keys: Vec<KeySchemaElement>,
    indexes: Vec<GlobalSecondaryIndex>,
    /// The attribute DynamoDB's TTL deletes items by.
    ttl_attribute: Option<String>,
}

fn text<'a>(v: &'a Value, key: &str) -> Result<&'a str, SchemaError> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| SchemaError::Template(format!("missing string {key}")))
}

fn list<'a>(v: &'a Value, key: &str) -> Result<&'a Vec<Value>, SchemaError> {
    v.get(key)
        .and_then(Value::as_sequence)
        .ok_or_else(|| SchemaError::Template(format!("missing list {key}")))
}

fn key_schema(v: &Value) -> Result<Vec<KeySchemaElement>, SchemaError> {
    list(v, "KeySchema")?
        .iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(text(k, "AttributeName")?)
                .key_type(KeyType::from(text(k, "KeyType")?))
                .build()
                .map_err(|e| SchemaError::Template(e.to_string()))
        })
        .collect()
}

impl TableSchema {
    /// Reads the table resource out of the template text.
    pub fn from_template(template: &str) -> Result<Self, SchemaError> {
        let doc: Value = serde_norway::from_str(template).map_err(|e| SchemaError::Template(e.to_string()))?;
        let props = doc
            .get("Resources")
            .and_then(|r| r.get(TABLE_RESOURCE))
            .and_then(|t| t.get("Properties"))
            .ok_or_else(|| SchemaError::Template(format!("no Resources.{TABLE_RESOURCE}.Properties")))?;
        let attributes = list(props, "AttributeDefinitions")?
            .iter()
            .map(|a| {
                AttributeDefinition::builder()
                    .attribute_name(text(a, "AttributeName")?)
                    .attribute_type(ScalarAttributeType::from(text(a, "AttributeType")?))
                    .build()
                    .map_err(|e| SchemaError::Template(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let indexes = match props.get("GlobalSecondaryIndexes") {
            None => Vec::new(),
            Some(_) => list(props, "GlobalSecondaryIndexes")?
                .iter()
                .map(|g| {
                    let projection = g
                        .get("Projection")
                        .ok_or_else(|| SchemaError::Template("index without Projection".into()))?;
                    let mut builder = Projection::builder()
                        .projection_type(ProjectionType::from(text(projection, "ProjectionType")?));
                    if let Some(attrs) = projection.get("NonKeyAttributes").and_then(Value::as_sequence) {
                        for a in attrs.iter().filter_map(Value::as_str) {
                            builder = builder.non_key_attributes(a);
                        }
                    }
                    GlobalSecondaryIndex::builder()
                        .index_name(text(g, "IndexName")?)
                        .set_key_schema(Some(key_schema(g)?))
                        .projection(builder.build())
                        .build()
                        .map_err(|e| SchemaError::Template(e.to_string()))
                })
                .collect::<Result<_, _>>()?,
        };
        let ttl_attribute = props
            .get("TimeToLiveSpecification")
            .and_then(|t| t.get("AttributeName"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(TableSchema {
            attributes,
            keys: key_schema(props)?,
            indexes,
            ttl_attribute,
        })
    }

    /// The schema of the template compiled into this binary.
    pub fn bundled() -> Result<Self, SchemaError> {
        Self::from_template(TEMPLATE)
    }

    /// Creates the table (on-demand billing), waits until it is active, then turns on TTL as the
    /// template declares it.
    pub async fn create_table(&self, client: &Client, table: &str) -> Result<(), SchemaError> {
        let create = |e: aws_sdk_dynamodb::error::SdkError<_>| SchemaError::Create(Box::new(e.into_service_error()));
        let mut req = client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .set_attribute_definitions(Some(self.attributes.clone()))
            .set_key_schema(Some(self.keys.clone()));
        if !self.indexes.is_empty() {
            req = req.set_global_secondary_indexes(Some(self.indexes.clone()));
        }
        req.send().await.map_err(create)?;
        for _ in 0..100 {
            let desc = client
                .describe_table()
                .table_name(table)
                .send()
                .await
                .map_err(|e| SchemaError::Create(Box::new(e.into_service_error())))?;
            let status = desc.table().and_then(|t| t.table_status()).cloned();
            if status == Some(aws_sdk_dynamodb::types::TableStatus::Active) {
                return self.enable_ttl(client, table).await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(SchemaError::Create(
            format!("table {table} did not become active").into(),
        ))
    }

    async fn enable_ttl(&self, client: &Client, table: &str) -> Result<(), SchemaError> {
        let Some(attribute) = &self.ttl_attribute else {
            return Ok(());
        };
        let spec = TimeToLiveSpecification::builder()
            .attribute_name(attribute)
            .enabled(true)
            .build()
            .map_err(|e| SchemaError::Template(e.to_string()))?;
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(spec)
            .send()
            .await
            .map_err(|e| SchemaError::Create(Box::new(e.into_service_error())))?;
        Ok(())
    }
}
