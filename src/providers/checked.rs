//! The registry's wrapper around every provider: in debug builds (every test
//! run), each answer is held to its schema, so a provider cannot emit an
//! attribute or property the schema does not declare (and so that validation,
//! plans, docs and the JSON Schema do not know about).

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::{
    Attrs, BatchResult, Created, Ctx, HasSchema, Observed, Provider, ProviderError, ReadResult,
    Resource, Update,
};
use crate::schema::{Props, Schema};

pub struct Checked(pub &'static dyn Provider);

/// The first name in `attrs` that the schema does not declare as an
/// attribute.
pub fn undeclared<'a>(schema: &Schema, attrs: &'a Map<String, Value>) -> Option<&'a str> {
    attrs
        .keys()
        .map(String::as_str)
        .find(|name| schema.attr(name).is_none())
}

fn check_attrs(schema: &Schema, attrs: &Map<String, Value>) {
    if let (true, Some(name)) = (cfg!(debug_assertions), undeclared(schema, attrs)) {
        panic!(
            "{} emits `{name}`, which its schema does not declare",
            schema.type_name
        );
    }
}

fn check_observed(schema: &Schema, observed: &Observed) {
    check_attrs(schema, &observed.attrs);
    let stray = observed.props.keys().find(|p| schema.prop(p).is_none());
    if let (true, Some(name)) = (cfg!(debug_assertions), stray) {
        panic!(
            "{} observes property `{name}`, which its schema does not declare",
            schema.type_name
        );
    }
}

impl Checked {
    fn observed(&self, got: &ReadResult) {
        if let Ok(Some(observed)) = got {
            check_observed(self.0.schema(), observed);
        }
    }
}

impl HasSchema for Checked {
    fn schema(&self) -> &'static Schema {
        self.0.schema()
    }
}

#[async_trait]
impl Provider for Checked {
    async fn create(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Created, ProviderError> {
        let created = self.0.create(cx, r).await;
        if let Ok(c) = &created {
            check_attrs(self.schema(), &c.attrs);
        }
        created
    }

    async fn read(&self, cx: &Ctx, physical_id: &str) -> ReadResult {
        let got = self.0.read(cx, physical_id).await;
        self.observed(&got);
        got
    }

    async fn read_recorded(&self, cx: &Ctx, physical_id: &str, attrs: &Attrs) -> ReadResult {
        let got = self.0.read_recorded(cx, physical_id, attrs).await;
        self.observed(&got);
        got
    }

    async fn update(&self, cx: &Ctx, u: &Update<'_>) -> Result<Attrs, ProviderError> {
        let attrs = self.0.update(cx, u).await;
        if let Ok(attrs) = &attrs {
            check_attrs(self.schema(), attrs);
        }
        attrs
    }

    async fn delete(
        &self,
        cx: &Ctx,
        physical_id: &str,
        props: &Props,
    ) -> Result<(), ProviderError> {
        self.0.delete(cx, physical_id, props).await
    }

    async fn find(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Option<String>, ProviderError> {
        self.0.find(cx, r).await
    }

    async fn exists(&self, cx: &Ctx, id: &str) -> Result<Option<bool>, ProviderError> {
        self.0.exists(cx, id).await
    }

    async fn read_many(&self, cx: &Ctx, ids: &[String]) -> BatchResult {
        let got = self.0.read_many(cx, ids).await;
        for observed in got.iter().flat_map(|m| m.values().flatten()) {
            check_observed(self.schema(), observed);
        }
        got
    }

    async fn find_existing(
        &self,
        cx: &Ctx,
        r: &Resource<'_>,
    ) -> Result<Option<String>, ProviderError> {
        self.0.find_existing(cx, r).await
    }

    fn derive(
        &self,
        props: &mut Props,
        stack_dir: &std::path::Path,
    ) -> Result<(), (&'static str, String)> {
        self.0.derive(props, stack_dir)
    }

    async fn read_data(
        &self,
        cx: &Ctx,
        props: &Props,
    ) -> Result<Map<String, Value>, ProviderError> {
        let attrs = self.0.read_data(cx, props).await;
        if let Ok(attrs) = &attrs {
            check_attrs(self.schema(), attrs);
        }
        attrs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attribute_no_schema_declares_is_named() {
        let schema = super::super::lookup("aws_sns_topic").unwrap().schema();
        let attrs = super::super::attrs([("arn", "a".into()), ("owner", "o".into())]);
        assert_eq!(undeclared(schema, &attrs), Some("owner"));
    }

    /// A method the wrapper does not forward would silently fall back to the
    /// trait's default for every type.
    #[test]
    fn the_wrapper_forwards_every_method_of_the_trait() {
        let fns = |text: &str, from: &str| -> Vec<String> {
            let start = text.find(from).unwrap();
            let body = &text[start..start + text[start..].find("\n}\n").unwrap()];
            let mut names: Vec<String> = body
                .split("fn ")
                .skip(1)
                .map(|s| s.split(['(', '<']).next().unwrap().to_string())
                .collect();
            names.sort();
            names
        };
        let trait_text = include_str!("mod.rs");
        let wrapper_text = include_str!("checked.rs");
        assert_eq!(
            fns(wrapper_text, "impl Provider for Checked"),
            fns(trait_text, "pub trait Provider")
        );
    }
}
