use async_trait::async_trait;
use aws_sdk_ec2::types::Filter;
use serde_json::{Map, Value};

use super::{
    attrs, aws, str_list, Attrs, Created, Ctx, Observed, Provider, ProviderError, Resource, Update,
};
use crate::schema::{
    Actions, ActsOn, Attr, Default, Kind, Names, Prop, Props, Schema, Service, Type,
};

/// Data source: looks up an AMI, typically the latest Amazon Linux.
pub struct Ami;

static FILTER: &[Prop] = &[
    Prop::new(
        "name",
        Type::String,
        "Filter name, e.g. name or architecture.",
    )
    .required(),
    Prop::new(
        "values",
        Type::List(&Type::String),
        "Accepted values (wildcards * and ?).",
    )
    .required(),
];

static SCHEMA: Schema = Schema {
    type_name: "aws_ami",
    kind: Kind::Data,
    service: Service::Ec2,
    doc: "Looks up an AMI on every plan.",
    props: &[
        Prop::new(
            "most_recent",
            Type::Bool,
            "Pick the newest of several matches.",
        )
        .default(Default::Bool(false)),
        Prop::new(
            "owners",
            Type::List(&Type::String),
            "Owner account ids or aliases (amazon, self).",
        )
        .required(),
        Prop::new(
            "filter",
            Type::List(&Type::Object(FILTER)),
            "DescribeImages filters.",
        ),
    ],
    attrs: &[
        Attr::new("id", "AMI id."),
        Attr::new("image_id", "AMI id."),
        Attr::new("arn", "AMI ARN."),
        Attr::new("name", "AMI name."),
        Attr::new("architecture", "x86_64 or arm64."),
        Attr::new("creation_date", "When the AMI was made."),
    ],
    identity: &[],
    names: &[
        ("id", Names::Id),
        ("image_id", Names::Id),
        ("arn", Names::Arn),
        ("name", Names::Name),
    ],
    actions: Actions {
        read: &["ec2:DescribeImages"],
        create: &[],
        update: &[],
        delete: &[],
        on: ActsOn::Itself,
    },
    ..Schema::BASE
};

#[async_trait]
impl Provider for Ami {
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    async fn read_data(
        &self,
        cx: &Ctx,
        props: &Props,
    ) -> Result<Map<String, Value>, ProviderError> {
        let filters = props
            .get("filter")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|f| {
                Filter::builder()
                    .name(f.get("name").and_then(Value::as_str).unwrap_or_default())
                    .set_values(Some(str_list(f.get("values"))))
                    .build()
            })
            .collect();
        let out = cx
            .ec2()
            .describe_images()
            .set_owners(Some(str_list(props.get("owners"))))
            .set_filters(Some(filters))
            .send()
            .await
            .map_err(aws)?;
        let mut images = out.images.unwrap_or_default();
        if images.is_empty() {
            return Err(ProviderError::refused(
                "no AMI matches the owners and filters",
            ));
        }
        if images.len() > 1 && props.get("most_recent").and_then(Value::as_bool) != Some(true) {
            return Err(ProviderError::refused(format!(
                "{} AMIs match; narrow the filters or set most_recent: true",
                images.len()
            )));
        }
        // ISO-8601 creation dates sort as text.
        images.sort_by(|a, b| a.creation_date.cmp(&b.creation_date));
        let Some(image) = images.pop() else {
            return Err(ProviderError::refused("no AMI matches"));
        };
        let id = image.image_id.unwrap_or_default();
        let arn = format!("arn:aws:ec2:{}::image/{id}", cx.region());
        Ok(attrs([
            ("id", id.clone().into()),
            ("image_id", id.into()),
            ("arn", arn.into()),
            ("name", image.name.unwrap_or_default().into()),
            (
                "architecture",
                image
                    .architecture
                    .map(|a| a.as_str().to_string())
                    .unwrap_or_default()
                    .into(),
            ),
            (
                "creation_date",
                image.creation_date.unwrap_or_default().into(),
            ),
        ]))
    }

    async fn create(&self, _: &Ctx, _: &Resource<'_>) -> Result<Created, ProviderError> {
        Err(ProviderError::refused(
            "aws_ami is a data source; it is read, never created",
        ))
    }

    async fn read(&self, _: &Ctx, _: &str) -> Result<Option<Observed>, ProviderError> {
        Ok(None)
    }

    async fn update(&self, _: &Ctx, _: &Update<'_>) -> Result<Attrs, ProviderError> {
        Err(ProviderError::refused(
            "aws_ami is a data source; it is read, never updated",
        ))
    }

    async fn delete(&self, _: &Ctx, _: &str, _: &Props) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn find(&self, _: &Ctx, _: &Resource<'_>) -> Result<Option<String>, ProviderError> {
        Ok(None) // a data source is read, never created
    }
}
