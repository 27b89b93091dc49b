"""What the API server does with a custom resource body before storing it: prune, default, validate.

Follows apiextensions-apiserver (``pkg/apiserver/schema/pruning``, ``pkg/apiserver/schema/defaulting``,
``pkg/apiserver/validation``) and server-side field validation (KEP-2885):

- fields the structural schema does not declare are dropped (unless ``x-kubernetes-preserve-unknown-fields``);
  with ``?fieldValidation=Strict`` they are a 400 BadRequest instead, otherwise a ``Warning`` header;
- ``null`` values are dropped, then ``default:`` values of absent properties are filled in;
- the result is validated against the CRD's ``openAPIV3Schema``; failures are 422 Invalid with one cause per
  field, worded like the API server's.

The schemas are KServe's CRDs as the project keeps them in ``shared/schemas/kserve``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import yaml
from jsonschema import Draft7Validator

from .store import ApiError, ResourceType

_OBJECT_META_FIELDS = {"name", "generateName", "namespace", "uid", "resourceVersion", "generation",
                       "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
                       "annotations", "ownerReferences", "finalizers", "managedFields", "selfLink"}


@dataclass
class CrdSchema:
    """The served version's ``openAPIV3Schema`` of one CRD."""

    rtype: ResourceType
    schema: dict

    @classmethod
    def load(cls, path: Path, version: str) -> CrdSchema:
        crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        spec = crd["spec"]
        [served] = [v for v in spec["versions"] if v["name"] == version]
        rtype = ResourceType(spec["group"], version, spec["names"]["plural"], spec["names"]["kind"],
                             spec["scope"] == "Namespaced", "status" in (served.get("subresources") or {}))
        return cls(rtype, served["schema"]["openAPIV3Schema"])

    @cached_property
    def _validator(self) -> Draft7Validator:
        return Draft7Validator(self.schema)

    def admit(self, obj: dict, strict: bool) -> tuple[dict, list[str]]:
        """Prunes, defaults and validates ``obj``; returns the object to store and warnings.

        Raises:
            ApiError: 400 for unknown fields under ``strict``, 422 when the schema rejects the object.
        """
        obj = copy.deepcopy(obj)
        unknown: list[str] = []
        meta = obj.get("metadata") or {}
        unknown += [f"metadata.{k}" for k in meta if k not in _OBJECT_META_FIELDS]
        obj["metadata"] = {k: v for k, v in meta.items() if k in _OBJECT_META_FIELDS}
        root = self.schema.get("properties", {})
        for key in list(obj):
            if key in ("apiVersion", "kind", "metadata"):
                continue
            if key not in root:
                unknown.append(key)
                del obj[key]
            else:
                obj[key] = _prune(obj[key], root[key], key, unknown)
                if obj[key] is None:
                    del obj[key]
        name = meta.get("name", "")
        if unknown and strict:
            raise ApiError(400, "BadRequest", f"{self.rtype.kind} in version \"{self.rtype.version}\" cannot be "
                           f"handled as a {self.rtype.kind}: strict decoding error: "
                           + ", ".join(f'unknown field "{u}"' for u in unknown))
        _default(obj, self.schema)
        errors = sorted(self._validator.iter_errors({k: v for k, v in obj.items() if k != "metadata"}),
                        key=lambda e: list(e.absolute_path))
        if errors:
            causes = [_cause(e) for e in errors]
            raise ApiError(422, "Invalid", f'{self.rtype.kind}.{self.rtype.group} "{name}" is invalid: '
                           + ", ".join(f"{c['field']}: {c['message']}" for c in causes),
                           {"name": name, "group": self.rtype.group, "kind": self.rtype.kind, "causes": causes})
        return obj, [f'unknown field "{u}"' for u in unknown]


def _prune(value, schema: dict, path: str, unknown: list[str]):
    if value is None:
        return None  # nulls are dropped before defaulting
    if isinstance(value, dict) and (schema.get("type") == "object" or "properties" in schema):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
        pruned = {}
        for key, item in value.items():
            if item is None:
                continue
            if properties is not None and key in properties:
                pruned[key] = _prune(item, properties[key], f"{path}.{key}", unknown)
            elif isinstance(additional, dict):
                pruned[key] = _prune(item, additional, f"{path}.{key}", unknown)
            elif preserve or additional is True or (properties is None and additional is None):
                pruned[key] = item
            else:
                unknown.append(f"{path}.{key}")
        return {k: v for k, v in pruned.items() if v is not None}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_prune(item, schema["items"], f"{path}[{i}]", unknown) for i, item in enumerate(value)]
    return value


def _default(value, schema: dict) -> None:
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                _default(value[key], sub)
        if isinstance(schema.get("additionalProperties"), dict):
            for item in value.values():
                _default(item, schema["additionalProperties"])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _default(item, schema["items"])


def _cause(error) -> dict:
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
    value = json.dumps(error.instance)
    if error.validator == "required":
        missing = error.message.split("'")[1]
        return {"reason": "FieldValueRequired", "message": "Required value",
                "field": f"{field}.{missing}".lstrip(".")}
    if error.validator == "enum":
        allowed = ", ".join(json.dumps(v) for v in error.validator_value)
        return {"reason": "FieldValueNotSupported", "field": field,
                "message": f"Unsupported value: {value}: supported values: {allowed}"}
    if error.validator == "type":
        return {"reason": "FieldValueTypeInvalid", "field": field,
                "message": f"Invalid value: {value}: {field} in body must be of type {error.validator_value}: {value}"}
    return {"reason": "FieldValueInvalid", "field": field, "message": f"Invalid value: {value}: {error.message}"}
