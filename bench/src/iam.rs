//! Least privilege, checked against what the functions do: the AWS requests each function sent (seen by
//! the harness's proxy) turned into the IAM actions and resources they need, and the grants of its
//! policy in template.yaml, both reduced to the same symbolic form (`table`, `index/<name>`,
//! `queue/<resource>`), so a test can insist that every request is granted and every grant is used.

use std::collections::BTreeSet;

use serde_json::Value;
use serde_norway::Value as Yaml;

use crate::AwsCall;

/// What one request needs IAM to allow.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Need {
    /// `dynamodb:PutItem`, `sqs:SendMessage`, ...
    pub action: String,
    /// `table`, `index/<name>`, `queue/<resource>`.
    pub resource: String,
    /// The item's partition key, for a request on one item (what `dynamodb:LeadingKeys` conditions on).
    pub leading_key: Option<String>,
}

/// One `Allow` statement of a function's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Its actions.
    pub actions: Vec<String>,
    /// Its resources, symbolic.
    pub resources: Vec<String>,
    /// The partition keys a `ForAllValues:StringEquals` `dynamodb:LeadingKeys` condition allows, if any.
    pub leading_keys: Option<Vec<String>>,
}

impl Grant {
    /// Whether this statement allows `need`.
    pub fn allows(&self, need: &Need) -> bool {
        self.actions.contains(&need.action)
            && self.resources.contains(&need.resource)
            && match (&self.leading_keys, &need.leading_key) {
                (None, _) => true,
                (Some(keys), Some(key)) => keys.contains(key),
                (Some(_), None) => false,
            }
    }
}

fn pk(key: &Value) -> Option<String> {
    key.get("pk")
        .and_then(|v| v.get("S"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The IAM actions and resources one request needs (a transaction needs one per item it names:
/// DynamoDB authorizes `TransactWriteItems` by its items' actions).
pub fn needs(call: &AwsCall, queue: &str) -> Vec<Need> {
    let need = |action: &str, resource: String, leading_key: Option<String>| Need {
        action: action.to_owned(),
        resource,
        leading_key,
    };
    let body = &call.body;
    match call.target.split_once('.') {
        Some(("DynamoDB_20120810", op)) => {
            let on = |index: Option<&str>| index.map_or_else(|| "table".to_owned(), |i| format!("index/{i}"));
            match op {
                "GetItem" | "DeleteItem" | "UpdateItem" => {
                    vec![need(&format!("dynamodb:{op}"), on(None), pk(&body["Key"]))]
                }
                "PutItem" => vec![need("dynamodb:PutItem", on(None), pk(&body["Item"]))],
                "Query" | "Scan" => vec![need(&format!("dynamodb:{op}"), on(body["IndexName"].as_str()), None)],
                "BatchGetItem" | "BatchWriteItem" => vec![need(&format!("dynamodb:{op}"), on(None), None)],
                "TransactWriteItems" => body["TransactItems"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|item| {
                        let (kind, what) = item.as_object()?.iter().next()?;
                        let action = match kind.as_str() {
                            "Put" => "dynamodb:PutItem",
                            "Update" => "dynamodb:UpdateItem",
                            "Delete" => "dynamodb:DeleteItem",
                            "ConditionCheck" => "dynamodb:ConditionCheckItem",
                            _ => return None,
                        };
                        let key = if kind == "Put" { &what["Item"] } else { &what["Key"] };
                        Some(need(action, on(None), pk(key)))
                    })
                    .collect(),
                "TransactGetItems" => body["TransactItems"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|item| need("dynamodb:GetItem", on(None), pk(&item["Get"]["Key"])))
                    .collect(),
                other => vec![need(&format!("dynamodb:{other}"), on(None), None)],
            }
        }
        Some(("AmazonSQS", op)) => vec![need(&format!("sqs:{op}"), format!("queue/{queue}"), None)],
        _ => vec![need(&format!("unknown:{}", call.target), String::new(), None)],
    }
}

/// The symbolic form of a policy's resource: `!GetAtt OrdersTable.Arn` is `table`, `!Sub
/// "${OrdersTable.Arn}/index/<name>"` is `index/<name>`, `!GetAtt <Queue>.Arn` is `queue/<Queue>`.
fn resource(value: &Yaml, table: &str) -> Result<String, String> {
    let Yaml::Tagged(tagged) = value else {
        return Err(format!("a resource that is not !GetAtt or !Sub: {value:?}"));
    };
    let text = tagged.value.as_str().ok_or("a tagged resource that is not a string")?;
    match tagged.tag.to_string().as_str() {
        "!GetAtt" if text == format!("{table}.Arn") => Ok("table".to_owned()),
        "!GetAtt" => Ok(format!("queue/{}", text.trim_end_matches(".Arn"))),
        "!Sub" => text
            .strip_prefix(&format!("${{{table}.Arn}}/"))
            .map(str::to_owned)
            .ok_or_else(|| format!("an unexpected !Sub resource: {text}")),
        tag => Err(format!("a resource tagged {tag}")),
    }
}

/// The `Allow` statements of the function whose binary is `binary` (its `BuildProperties.Binary`).
pub fn grants(template: &str, binary: &str) -> Result<Vec<Grant>, String> {
    let doc: Yaml = serde_norway::from_str(template).map_err(|e| e.to_string())?;
    let resources = doc["Resources"].as_mapping().ok_or("no Resources")?;
    let (_, function) = resources
        .iter()
        .find(|(_, r)| r["Metadata"]["BuildProperties"]["Binary"].as_str() == Some(binary))
        .ok_or_else(|| format!("no function builds {binary}"))?;
    let mut grants = Vec::new();
    for policy in function["Properties"]["Policies"].as_sequence().into_iter().flatten() {
        let statements = policy["Statement"]
            .as_sequence()
            .ok_or_else(|| format!("{binary}: a policy that is not a Statement list (a SAM policy template?)"))?;
        for statement in statements {
            if statement["Effect"].as_str() != Some("Allow") {
                return Err(format!("{binary}: a statement that is not Allow"));
            }
            let list = |v: &Yaml| -> Vec<Yaml> { v.as_sequence().cloned().unwrap_or_else(|| vec![v.clone()]) };
            let actions = list(&statement["Action"])
                .iter()
                .map(|a| a.as_str().map(str::to_owned).ok_or("an action that is not a string"))
                .collect::<Result<Vec<_>, _>>()?;
            let resources = list(&statement["Resource"])
                .iter()
                .map(|r| resource(r, "OrdersTable"))
                .collect::<Result<Vec<_>, _>>()?;
            let leading_keys = match &statement["Condition"] {
                Yaml::Null => None,
                condition => {
                    let keys = &condition["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"];
                    let keys = keys
                        .as_sequence()
                        .ok_or_else(|| format!("{binary}: a condition other than dynamodb:LeadingKeys"))?;
                    Some(keys.iter().filter_map(|k| k.as_str().map(str::to_owned)).collect())
                }
            };
            grants.push(Grant {
                actions,
                resources,
                leading_keys,
            });
        }
    }
    Ok(grants)
}

/// What a function's requests and its policy disagree on: requests no statement allows, and (statement
/// index, action, resource) grants no request used.
pub fn compare(needs: &BTreeSet<Need>, grants: &[Grant]) -> (Vec<Need>, Vec<String>) {
    let missing = needs
        .iter()
        .filter(|n| !grants.iter().any(|g| g.allows(n)))
        .cloned()
        .collect();
    let mut unused = Vec::new();
    for (i, grant) in grants.iter().enumerate() {
        for action in &grant.actions {
            for resource in &grant.resources {
                let used = needs
                    .iter()
                    .any(|n| &n.action == action && &n.resource == resource && grant.allows(n));
                if !used {
                    unused.push(format!("statement {i}: {action} on {resource}"));
                }
            }
        }
    }
    (missing, unused)
}
