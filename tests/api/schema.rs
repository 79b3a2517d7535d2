//! The table the tests and the local server create from template.yaml has the template's keys,
//! indexes and TTL.

use infra::dynamodb::schema::TableSchema;

#[tokio::test]
async fn a_table_created_from_the_template_matches_it() {
    let Some(endpoint) = e2e::emulator() else { return };
    let client = e2e::dynamo_client(&endpoint);
    let table = format!("schema-{}", uuid::Uuid::now_v7().simple());

    TableSchema::bundled()
        .unwrap()
        .create_table(&client, &table)
        .await
        .unwrap();

    let desc = client.describe_table().table_name(&table).send().await.unwrap();
    let desc = desc.table().unwrap();
    let keys: Vec<_> = desc
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name(), k.key_type().as_str()))
        .collect();
    assert_eq!(keys, [("pk", "HASH"), ("sk", "RANGE")]);
    let mut indexes: Vec<_> = desc
        .global_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name())
        .collect();
    indexes.sort_unstable();
    assert_eq!(indexes, ["by_expiry", "by_owner", "by_payment", "by_work"]);
    let ttl = client.describe_time_to_live().table_name(&table).send().await.unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.attribute_name(), Some("ttl"));
    assert_eq!(ttl.time_to_live_status().map(|s| s.as_str()), Some("ENABLED"));
}
