//! What the registry of resource types says, for people and editors: the JSON
//! Schema of stack.yaml (`stackctl schema`) and docs/resources.md
//! (`stackctl schema --markdown`). Both come from the schemas; neither is
//! written by hand.

use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use crate::providers;
use crate::schema::{Kind, Prop, Schema, Type};

fn reference() -> Value {
    json!({"type": "string", "pattern": "\\$\\{[^}]+\\}", "description": "A reference: ${id.attribute}, ${var.NAME} or ${stack.name|region|account_id}."})
}

fn value_schema(ty: &Type) -> Value {
    let base = match ty {
        Type::String => json!({"type": "string"}),
        Type::Int => json!({"type": "integer"}),
        Type::Float => json!({"type": "number"}),
        Type::Bool => json!({"type": "boolean"}),
        Type::List(inner) => json!({"type": "array", "items": value_schema(inner)}),
        Type::StringMap => {
            json!({"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}})
        }
        Type::Object(props) => object_schema(props),
        Type::Policy => {
            json!({"type": ["object", "string"], "description": "An IAM policy document: a map, or JSON text.", "properties": {"Version": {"const": "2012-10-17"}, "Statement": {}}})
        }
        Type::Json => json!({"type": ["object", "string"]}),
    };
    match ty {
        Type::String => base,
        _ => json!({"anyOf": [base, reference()]}),
    }
}

fn object_schema(props: &[Prop]) -> Value {
    let mut properties = Map::new();
    for p in props.iter().filter(|p| !p.computed) {
        let mut s = value_schema(&p.ty);
        if let Value::Object(m) = &mut s {
            m.insert("description".into(), Value::from(p.doc));
            if let Some(d) = p.default {
                m.insert("default".into(), d.to_json());
            }
        }
        properties.insert(p.name.to_string(), s);
    }
    let required: Vec<&str> = props
        .iter()
        .filter(|p| p.required)
        .map(|p| p.name)
        .collect();
    json!({"type": "object", "additionalProperties": false, "properties": properties, "required": required})
}

fn declaration(schema: &Schema) -> Value {
    let mut keys = json!({
        "type": {"const": schema.type_name},
        "properties": object_schema(schema.props),
        "depends_on": {"type": "array", "items": {"type": "string"}},
    });
    if schema.kind == Kind::Resource {
        keys["sensitive"] = json!({"description": "false, or the names whose values stay masked in plans", "type": ["boolean", "array"]});
        keys["needs"] = json!({"type": "array", "description": "What the resource's code does in AWS, for `stackctl check`.", "items": {
            "type": "object", "required": ["actions", "resource"],
            "properties": {"actions": {"type": ["string", "array"]}, "resource": {"type": "string"}}}});
        keys["for_each"] = json!({"type": ["array", "object", "string"],
            "description": "A list of strings or a map (or ${var.NAME}): one resource per key, addressed id[\"key\"]; ${each.key}, ${each.value} inside."});
    }
    json!({"type": "object", "description": schema.doc, "required": ["type"], "additionalProperties": false, "properties": keys})
}

/// The JSON Schema (draft-07, as yaml-language-server reads it) of a stack file.
pub fn json_schema() -> Value {
    let mut definitions = Map::new();
    let mut by_kind = |kind: Kind| -> Value {
        let cases: Vec<Value> = providers::all()
            .map(|p| p.schema())
            .filter(|s| s.kind == kind)
            .map(|s| {
                definitions.insert(s.type_name.to_string(), declaration(s));
                json!({"if": {"properties": {"type": {"const": s.type_name}}, "required": ["type"]},
                       "then": {"$ref": format!("#/definitions/{}", s.type_name)}})
            })
            .collect();
        let names: Vec<&str> = providers::all()
            .map(|p| p.schema())
            .filter(|s| s.kind == kind)
            .map(|s| s.type_name)
            .collect();
        json!({"type": "object",
               "propertyNames": {"pattern": "^[a-z][a-z0-9_]*$"},
               "additionalProperties": {"type": "object", "required": ["type"],
                   "properties": {"type": {"enum": names}}, "allOf": cases}})
    };
    let resources = by_kind(Kind::Resource);
    let data = by_kind(Kind::Data);
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://stackctl.dev/schema/stack.json",
        "title": "stackctl stack file",
        "type": "object",
        "required": ["stack"],
        "additionalProperties": false,
        "properties": {
            "stack": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$", "description": "Names the state file; tags every resource."},
            "region": {"type": "string", "description": "Used when AWS_REGION is unset."},
            "variables": {"type": "object", "additionalProperties": {
                "description": "A default value, or {default, sensitive, description}."}},
            "resources": resources,
            "data": data,
            "outputs": {"type": "object"},
            "modules": {"type": "object", "description": "Directories of variables, resources and outputs, instantiated here.",
                "additionalProperties": {"type": "object", "required": ["source"], "additionalProperties": false,
                    "properties": {
                        "source": {"type": "string", "description": "A directory holding a stack.yaml, from this file's."},
                        "inputs": {"type": "object", "description": "The module's variables."},
                        "for_each": {"type": ["array", "object", "string"], "description": "One instance per key: module.NAME[\"key\"]."}}}},
            "moved": {"type": "array", "description": "Records renamed without rebuilding their objects.",
                "items": {"type": "object", "required": ["from", "to"], "additionalProperties": false,
                    "properties": {"from": {"type": "string"}, "to": {"type": "string"}}}},
            "backend": {"type": "object", "maxProperties": 1, "description": "Where the state lives (default: state/<stack>.json beside the file).",
                "properties": {
                    "local": {"type": "object", "additionalProperties": false},
                    "s3": {"type": "object", "additionalProperties": false, "required": ["bucket"],
                        "properties": {
                            "bucket": {"type": "string"},
                            "key": {"type": "string", "description": "Default: stackctl/<stack>.json"},
                            "region": {"type": "string", "description": "The bucket's region."},
                            "kms_key_id": {"type": "string", "description": "SSE-KMS key; default SSE-S3 (AES256)."}}}},
                "additionalProperties": false}
        },
        "definitions": definitions,
    })
}

fn type_text(ty: &Type) -> String {
    match ty {
        Type::String => "string".into(),
        Type::Int => "integer".into(),
        Type::Float => "number".into(),
        Type::Bool => "boolean".into(),
        Type::List(inner) => format!("list of {}", type_text(inner)),
        Type::StringMap => "map of strings".into(),
        Type::Object(props) => format!(
            "map: {}",
            props
                .iter()
                .map(|p| format!("`{}`", p.name))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::Policy => "policy document".into(),
        Type::Json => "JSON document".into(),
    }
}

/// docs/resources.md.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Resource types\n\nGenerated by `stackctl schema --markdown` from the registry of resource types; a test fails when this file is stale. Type and property names are the Terraform AWS provider's.\n\n",
    );
    for kind in [Kind::Resource, Kind::Data] {
        for s in providers::all()
            .map(|p| p.schema())
            .filter(|s| s.kind == kind)
        {
            let _ = writeln!(
                out,
                "## `{}`{}\n\n{}\n",
                s.type_name,
                if kind == Kind::Data {
                    " (data source)"
                } else {
                    ""
                },
                s.doc
            );
            out.push_str("| property | type | required | default | forces replacement | sensitive | |\n|---|---|---|---|---|---|---|\n");
            for p in s.props {
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {} | {} | {} | {} | {}{} |",
                    p.name,
                    type_text(&p.ty),
                    if p.required { "yes" } else { "" },
                    p.default
                        .map(|d| format!("`{}`", d.to_json()))
                        .unwrap_or_default(),
                    if p.force_new { "yes" } else { "" },
                    if p.sensitive
                        || matches!(p.ty, Type::Object(sub) if sub.iter().any(|x| x.sensitive))
                    {
                        "yes"
                    } else {
                        ""
                    },
                    if p.computed { "(computed) " } else { "" },
                    p.doc.replace('|', "\\|")
                );
            }
            if !s.attrs.is_empty() {
                let _ = writeln!(
                    out,
                    "\nAttributes: {}.",
                    s.attrs
                        .iter()
                        .map(|a| format!("`{}` ({})", a.name, a.doc.trim_end_matches('.')))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_resources_md_is_what_the_registry_says() {
        let on_disk = include_str!("../docs/resources.md");
        assert!(
            on_disk == markdown(),
            "docs/resources.md is stale: run `stackctl schema --markdown > docs/resources.md`"
        );
    }

    #[test]
    fn the_schema_covers_every_type_and_property() {
        let s = json_schema();
        for p in providers::all() {
            let schema = p.schema();
            let def = &s["definitions"][schema.type_name];
            assert!(def.is_object(), "{}", schema.type_name);
            for prop in schema.props.iter().filter(|p| !p.computed) {
                assert!(
                    def["properties"]["properties"]["properties"][prop.name].is_object(),
                    "{}.{}",
                    schema.type_name,
                    prop.name
                );
            }
        }
        assert_eq!(
            s["definitions"]["aws_sqs_queue"]["properties"]["properties"]["required"],
            json!(["name"])
        );
    }

    #[test]
    fn the_schema_knows_every_key_the_stack_file_takes() {
        let s = json_schema();
        for key in crate::config::TOP_KEYS {
            assert!(s["properties"][key].is_object(), "top-level `{key}`");
        }
        let queue = &s["definitions"]["aws_sqs_queue"]["properties"];
        for key in crate::config::DECL_KEYS {
            assert!(queue[key].is_object(), "declaration key `{key}`");
        }
    }
}
