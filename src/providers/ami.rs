use async_trait::async_trait;
use aws_sdk_ec2::types::{Filter, Image};
use serde_json::{Map, Value};

use super::Typed;
use super::{
    attrs, str_list, Attrs, Created, Ctx, Provider, ProviderError, ReadResult, Resource, Update,
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

impl Typed for Ami {
    const SCHEMA: &'static Schema = &SCHEMA;
}

#[async_trait]
impl Provider for Ami {
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
        let out = send!(cx
            .ec2()
            .describe_images()
            .set_owners(Some(str_list(props.get("owners"))))
            .set_filters(Some(filters)))?;
        let most_recent = props.get("most_recent").and_then(Value::as_bool) == Some(true);
        let image = pick(out.images.unwrap_or_default(), most_recent)?;
        Ok(attrs_of(&image, &cx.region()))
    }

    async fn create(&self, _: &Ctx, _: &Resource<'_>) -> Result<Created, ProviderError> {
        Err(ProviderError::refused(
            "aws_ami is a data source; it is read, never created",
        ))
    }

    async fn read(&self, _: &Ctx, _: &str) -> ReadResult {
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

/// The one image the filters name, or with `most_recent` the newest of them.
fn pick(mut images: Vec<Image>, most_recent: bool) -> Result<Image, ProviderError> {
    if images.len() > 1 && !most_recent {
        return Err(ProviderError::refused(format!(
            "{} AMIs match; narrow the filters or set most_recent: true",
            images.len()
        )));
    }
    // ISO-8601 creation dates sort as text.
    images.sort_by(|a, b| a.creation_date.cmp(&b.creation_date));
    images
        .pop()
        .ok_or_else(|| ProviderError::refused("no AMI matches the owners and filters"))
}

/// DescribeImages' image as the data source's attributes.
fn attrs_of(image: &Image, region: &str) -> Map<String, Value> {
    let id = image.image_id().unwrap_or_default();
    let architecture = image.architecture().map(|a| a.as_str()).unwrap_or_default();
    attrs([
        ("id", id.into()),
        ("image_id", id.into()),
        ("arn", format!("arn:aws:ec2:{region}::image/{id}").into()),
        ("name", image.name().unwrap_or_default().into()),
        ("architecture", architecture.into()),
        (
            "creation_date",
            image.creation_date().unwrap_or_default().into(),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, created: &str) -> Image {
        Image::builder()
            .image_id(id)
            .name(format!("al2023-ami-{id}"))
            .architecture(aws_sdk_ec2::types::ArchitectureValues::X8664)
            .creation_date(created)
            .build()
    }

    #[test]
    fn the_newest_image_is_picked_only_when_most_recent_says_so() {
        let two = || {
            vec![
                image("ami-new", "2026-11-02T00:00:00.000Z"),
                image("ami-old", "2025-01-01T00:00:00.000Z"),
            ]
        };
        let newest = pick(two(), true).unwrap();
        assert_eq!(newest.image_id(), Some("ami-new"));
        let err = pick(two(), false).unwrap_err();
        assert!(err.to_string().contains("2 AMIs match"), "{err}");
        assert!(pick(vec![], true).is_err());
    }

    #[test]
    fn an_image_reads_as_its_id_arn_name_and_architecture() {
        let attrs = attrs_of(&image("ami-1", "2026-11-02"), "us-east-2");
        assert_eq!(
            Value::Object(attrs),
            serde_json::json!({"id": "ami-1", "image_id": "ami-1", "arn": "arn:aws:ec2:us-east-2::image/ami-1",
                               "name": "al2023-ami-ami-1", "architecture": "x86_64", "creation_date": "2026-11-02"})
        );
    }
}
