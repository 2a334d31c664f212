"""Message classes for api.proto, built from a descriptor at runtime.

Building the descriptor here instead of checking in protoc output keeps the exporter free
of generated code pinned to one protobuf runtime version (generated ``_pb2`` files refuse
to load on an older runtime). The fields mirror api.proto exactly.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "v1"
LIST_METHOD = "/v1.PodResourcesLister/List"

_STRING = descriptor_pb2.FieldDescriptorProto.TYPE_STRING
_MESSAGE = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
_REPEATED = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
_OPTIONAL = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL

# message -> [(field, number, type, repeated, message type)]
_FIELDS: dict[str, list[tuple[str, int, int, bool, str]]] = {
    "ListPodResourcesRequest": [],
    "ListPodResourcesResponse": [("pod_resources", 1, _MESSAGE, True, "PodResources")],
    "PodResources": [("name", 1, _STRING, False, ""), ("namespace", 2, _STRING, False, ""),
                     ("containers", 3, _MESSAGE, True, "ContainerResources")],
    "ContainerResources": [("name", 1, _STRING, False, ""),
                           ("devices", 2, _MESSAGE, True, "ContainerDevices")],
    "ContainerDevices": [("resource_name", 1, _STRING, False, ""),
                         ("device_ids", 2, _STRING, True, "")],
}


def _build() -> dict[str, Any]:
    f = descriptor_pb2.FileDescriptorProto(name="carbontrack/podresources/v1/api.proto",
                                           package=PACKAGE, syntax="proto3")
    for msg, fields in _FIELDS.items():
        m = f.message_type.add(name=msg)
        for name, number, ftype, repeated, type_name in fields:
            fd = m.field.add(name=name, number=number, type=ftype,
                             label=_REPEATED if repeated else _OPTIONAL)
            if type_name:
                fd.type_name = f".{PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()  # private pool: never clashes with other code
    fdesc = pool.Add(f)
    del fdesc
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
            for name in _FIELDS}


_CLASSES = _build()
ListPodResourcesRequest: Any = _CLASSES["ListPodResourcesRequest"]
ListPodResourcesResponse: Any = _CLASSES["ListPodResourcesResponse"]
PodResources: Any = _CLASSES["PodResources"]
ContainerResources: Any = _CLASSES["ContainerResources"]
ContainerDevices: Any = _CLASSES["ContainerDevices"]
