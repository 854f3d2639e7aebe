//! Arrow schemas as Delta's `schemaString`: primitive types only, timestamps with the UTC
//! zone as Delta `timestamp` (so no timestampNtz feature), column docs as `comment`.

use arrow::datatypes::{DataType, Schema, TimeUnit};

/// The Delta type name of an Arrow type kvlake's tables use; `None` for others.
pub fn delta_type(t: &DataType) -> Option<&'static str> {
    Some(match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string",
        DataType::Int64 => "long",
        DataType::Int32 => "integer",
        DataType::Int16 => "short",
        DataType::Int8 => "byte",
        DataType::Boolean => "boolean",
        DataType::Float64 => "double",
        DataType::Float32 => "float",
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "binary",
        DataType::Date32 => "date",
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => "timestamp",
        DataType::Dictionary(_, v) => return delta_type(v),
        _ => return None,
    })
}

/// `schemaString` for a table whose files hold `file_schema` and whose paths add
/// `partitions` (name, Arrow type), in that order.
pub fn schema_string(
    file_schema: &Schema,
    partitions: &[(&str, DataType)],
) -> Result<String, String> {
    let mut fields = Vec::with_capacity(file_schema.fields().len() + partitions.len());
    for f in file_schema.fields() {
        let ty = delta_type(f.data_type())
            .ok_or_else(|| format!("column {} has no Delta type: {}", f.name(), f.data_type()))?;
        let mut meta = serde_json::Map::new();
        if let Some(doc) = f.metadata().get("description") {
            meta.insert("comment".into(), doc.clone().into());
        }
        fields.push(serde_json::json!({
            "name": f.name(), "type": ty, "nullable": f.is_nullable(), "metadata": meta,
        }));
    }
    for (name, t) in partitions {
        let ty = delta_type(t).ok_or_else(|| format!("partition {name} has no Delta type"))?;
        fields.push(serde_json::json!({
            "name": name, "type": ty, "nullable": false, "metadata": {},
        }));
    }
    Ok(serde_json::json!({"type": "struct", "fields": fields}).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::raw_file_schema;

    #[test]
    fn the_raw_schema_maps_onto_delta_types() {
        let s = schema_string(
            &raw_file_schema(),
            &[("date", DataType::Date32), ("hour", DataType::Int32)],
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        let fields = v["fields"].as_array().unwrap();
        let find = |n: &str| fields.iter().find(|f| f["name"] == n).unwrap().clone();
        assert_eq!(find("time")["type"], "timestamp");
        assert_eq!(find("_offset")["type"], "long");
        assert_eq!(find("http_status_code")["type"], "integer");
        assert_eq!(find("date")["type"], "date");
        assert_eq!(find("hour")["type"], "integer");
        assert!(find("time")["metadata"]["comment"].as_str().is_some());
        assert_eq!(fields.len(), raw_file_schema().fields().len() + 2);
    }
}
