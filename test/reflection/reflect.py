#!/usr/bin/python3
"""A small grpcurl-like client driven only by gRPC server reflection.

It knows nothing about the server's API in advance: every service, method and
message is learned at run time from the server's reflection service
(grpc.reflection.v1, falling back to v1alpha), and requests and responses are
built from those descriptors. Even the reflection protocol's own messages are
declared here, field by field, with no generated code.

Usage:
  reflect.py ADDRESS list
  reflect.py ADDRESS describe SYMBOL
  reflect.py ADDRESS call FULL_METHOD JSON
  reflect.py ADDRESS stream FULL_METHOD JSON_LINES...

FULL_METHOD is "package.Service/Method" (or "package.Service.Method").
JSON uses the proto3 JSON mapping (lowerCamel or original field names).
Responses are printed as JSON with the original proto field names.
A failed call prints "ERROR <STATUS_NAME>: <details>" and exits with 1.

Needs Debian's python3-grpcio and python3-protobuf (run with /usr/bin/python3).
"""

import argparse
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

REFLECTION_PATHS = (
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
)

_FIELD = descriptor_pb2.FieldDescriptorProto


class ReflectionError(Exception):
    """The reflection service answered with an error_response."""


class CallFailed(Exception):
    """A call ended with a non-OK status (or could not be made)."""

    def __init__(self, code_name, details):
        super().__init__(f"{code_name}: {details}")
        self.code_name = code_name
        self.details = details


def message_class(pool, full_name):
    """Returns the Python class of a message type known to the pool."""
    descriptor = pool.FindMessageTypeByName(full_name)
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.22
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


def _add_message(file_proto, name, fields, oneof=None):
    """Adds a message to file_proto. fields: (name, number, type, label, type_name, in_oneof)."""
    message = file_proto.message_type.add(name=name)
    if oneof:
        message.oneof_decl.add(name=oneof)
    for field_name, number, field_type, label, type_name, in_oneof in fields:
        field = message.field.add(name=field_name, number=number, type=field_type, label=label)
        if type_name:
            field.type_name = type_name
        if in_oneof:
            field.oneof_index = 0


def reflection_messages():
    """Builds the ServerReflectionRequest/Response classes from a hand-made descriptor.

    Only the fields this client uses are declared; the others are unknown
    fields to it, which protobuf skips. The same classes serve v1 and v1alpha,
    whose messages are identical on the wire.
    """
    opt, rep = _FIELD.LABEL_OPTIONAL, _FIELD.LABEL_REPEATED
    string, bytes_, int32, msg = _FIELD.TYPE_STRING, _FIELD.TYPE_BYTES, _FIELD.TYPE_INT32, _FIELD.TYPE_MESSAGE
    package = "grpc.reflection.v1"
    file_proto = descriptor_pb2.FileDescriptorProto(name="reflect_py/reflection.proto", package=package, syntax="proto3")
    _add_message(file_proto, "ServerReflectionRequest", [
        ("host", 1, string, opt, None, False),
        ("file_by_filename", 3, string, opt, None, True),
        ("file_containing_symbol", 4, string, opt, None, True),
        ("list_services", 7, string, opt, None, True),
    ], oneof="message_request")
    _add_message(file_proto, "FileDescriptorResponse", [("file_descriptor_proto", 1, bytes_, rep, None, False)])
    _add_message(file_proto, "ServiceResponse", [("name", 1, string, opt, None, False)])
    _add_message(file_proto, "ListServiceResponse", [("service", 1, msg, rep, f".{package}.ServiceResponse", False)])
    _add_message(file_proto, "ErrorResponse", [
        ("error_code", 1, int32, opt, None, False),
        ("error_message", 2, string, opt, None, False),
    ])
    _add_message(file_proto, "ServerReflectionResponse", [
        ("valid_host", 1, string, opt, None, False),
        ("original_request", 2, msg, opt, f".{package}.ServerReflectionRequest", False),
        ("file_descriptor_response", 4, msg, opt, f".{package}.FileDescriptorResponse", True),
        ("list_services_response", 6, msg, opt, f".{package}.ListServiceResponse", True),
        ("error_response", 7, msg, opt, f".{package}.ErrorResponse", True),
    ], oneof="message_response")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return (message_class(pool, f"{package}.ServerReflectionRequest"),
            message_class(pool, f"{package}.ServerReflectionResponse"))


class ReflectionClient:
    """Asks a server's reflection service about its services and files."""

    def __init__(self, channel, timeout):
        self.channel = channel
        self.timeout = timeout
        self.request_class, self.response_class = reflection_messages()
        self.path = None  # The reflection path that works, once known.

    def ask(self, **request_fields):
        """Sends one ServerReflectionRequest on its own stream and returns the response."""
        request = self.request_class(**request_fields)
        paths = [self.path] if self.path else REFLECTION_PATHS
        for path in paths:
            info = self.channel.stream_stream(
                path,
                request_serializer=self.request_class.SerializeToString,
                response_deserializer=self.response_class.FromString,
            )
            try:
                responses = list(info(iter([request]), timeout=self.timeout))
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.UNIMPLEMENTED and path != paths[-1]:
                    continue  # No v1 on this server: try v1alpha.
                raise CallFailed(error.code().name, f"reflection: {error.details()}") from error
            self.path = path
            if len(responses) != 1:
                raise ReflectionError(f"expected one reflection response, got {len(responses)}")
            response = responses[0]
            if response.WhichOneof("message_response") == "error_response":
                error = response.error_response
                raise ReflectionError(f"{grpc_status_name(error.error_code)}: {error.error_message}")
            return response
        raise AssertionError("unreachable")

    def list_services(self):
        return [service.name for service in self.ask(list_services="*").list_services_response.service]

    def files_containing_symbol(self, symbol):
        return self._files(self.ask(file_containing_symbol=symbol))

    def files_by_filename(self, filename):
        return self._files(self.ask(file_by_filename=filename))

    @staticmethod
    def _files(response):
        return [descriptor_pb2.FileDescriptorProto.FromString(raw)
                for raw in response.file_descriptor_response.file_descriptor_proto]


class SymbolLoader:
    """Fills a fresh DescriptorPool with the files a symbol needs, fetched by reflection."""

    def __init__(self, reflection):
        self.reflection = reflection
        self.pool = descriptor_pool.DescriptorPool()
        self.fetched = {}  # file name -> FileDescriptorProto, received but maybe not yet added
        self.added = set()

    def load(self, symbol):
        files = self.reflection.files_containing_symbol(symbol)
        for file_proto in files:
            self.fetched.setdefault(file_proto.name, file_proto)
        # The first file is the one that declares the symbol; the rest are its dependencies.
        self._add(files[0].name)
        return self.pool

    def _add(self, name, chain=()):
        """Adds a file after its dependencies, fetching any the server did not send."""
        if name in self.added:
            return
        if name in chain:
            raise ReflectionError(f"import cycle: {' -> '.join(chain + (name,))}")
        if name not in self.fetched:
            for file_proto in self.reflection.files_by_filename(name):
                self.fetched.setdefault(file_proto.name, file_proto)
        file_proto = self.fetched[name]
        for dependency in file_proto.dependency:
            self._add(dependency, chain + (name,))
        self.pool.Add(file_proto)
        self.added.add(name)


def grpc_status_name(code):
    """Returns the name of a numeric gRPC status code, e.g. 5 -> NOT_FOUND."""
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status.name
    return str(code)


def split_method(full_method):
    """Splits "pkg.Service/Method" or "pkg.Service.Method" into service and method names."""
    name = full_method.lstrip("/")
    service, sep, method = name.rpartition("/") if "/" in name else name.rpartition(".")
    if not sep or not service or not method:
        raise ValueError(f"not a full method name: {full_method!r} (want package.Service/Method)")
    return service, method


def service_proto(pool, service_name):
    """Returns the ServiceDescriptorProto of a service (it carries the stream flags)."""
    proto = descriptor_pb2.ServiceDescriptorProto()
    pool.FindServiceByName(service_name).CopyToProto(proto)
    return proto


def to_json(message, emit_defaults):
    return json_format.MessageToJson(
        message,
        preserving_proto_field_name=True,
        including_default_value_fields=emit_defaults,
        indent=None,
    )


# ----------------------------------------------------------------- commands


def command_list(reflection, _args):
    for name in sorted(reflection.list_services()):
        print(name)


def command_describe(reflection, args):
    symbol = args.symbol.lstrip(".")
    pool = SymbolLoader(reflection).load(symbol)
    try:
        pool.FindServiceByName(symbol)
    except KeyError:
        pass
    else:
        return describe_service(pool, symbol)
    for finder, describer in ((pool.FindMessageTypeByName, describe_message), (pool.FindEnumTypeByName, describe_enum)):
        try:
            return describer(finder(symbol))
        except KeyError:
            continue
    service, _, method = symbol.rpartition(".")
    try:
        return describe_service(pool, service, only=method)
    except KeyError:
        raise ReflectionError(f"{symbol} is not a service, method, message or enum") from None


def describe_service(pool, service_name, only=None):
    proto = service_proto(pool, service_name)
    methods = [m for m in proto.method if only is None or m.name == only]
    if not methods:
        raise KeyError(only)
    if only is None:
        print(f"{service_name} is a service:")
        print(f"service {proto.name} {{")
    else:
        print(f"{service_name}.{only} is a method:")
    for method in methods:
        request = ("stream " if method.client_streaming else "") + method.input_type
        response = ("stream " if method.server_streaming else "") + method.output_type
        print(f"{'  ' if only is None else ''}rpc {method.name} ( {request} ) returns ( {response} );")
    if only is None:
        print("}")


_TYPE_NAMES = {value: name[len("TYPE_"):].lower()
               for name, value in _FIELD.Type.items() if name not in ("TYPE_MESSAGE", "TYPE_ENUM", "TYPE_GROUP")}


def describe_message(descriptor):
    proto = descriptor_pb2.DescriptorProto()
    descriptor.CopyToProto(proto)
    print(f"{descriptor.full_name} is a message:")
    print(f"message {proto.name} {{")
    for field in proto.field:
        label = "repeated " if field.label == _FIELD.LABEL_REPEATED else ""
        type_name = field.type_name or _TYPE_NAMES[field.type]
        oneof = f"  // oneof {proto.oneof_decl[field.oneof_index].name}" if field.HasField("oneof_index") else ""
        print(f"  {label}{type_name} {field.name} = {field.number};{oneof}")
    print("}")


def describe_enum(descriptor):
    print(f"{descriptor.full_name} is an enum:")
    print(f"enum {descriptor.name} {{")
    for value in descriptor.values:
        print(f"  {value.name} = {value.number};")
    print("}")


def resolve_method(reflection, full_method):
    """Returns (grpc path, MethodDescriptorProto, request class, response class) from reflection alone."""
    service_name, method_name = split_method(full_method)
    pool = SymbolLoader(reflection).load(service_name)
    matches = [m for m in service_proto(pool, service_name).method if m.name == method_name]
    if not matches:
        raise ReflectionError(f"service {service_name} has no method {method_name}")
    method = matches[0]
    return (f"/{service_name}/{method_name}", method,
            message_class(pool, method.input_type.lstrip(".")),
            message_class(pool, method.output_type.lstrip(".")))


def parse_request(request_class, text):
    try:
        return json_format.Parse(text, request_class())
    except json_format.ParseError as error:
        raise CallFailed("INVALID_REQUEST_JSON", str(error)) from error


def command_call(reflection, args):
    path, method, request_class, response_class = resolve_method(reflection, args.method)
    if method.client_streaming or method.server_streaming:
        raise ReflectionError(f"{args.method} is a streaming method; use the stream command")
    request = parse_request(request_class, args.json)
    invoke = reflection.channel.unary_unary(
        path, request_serializer=request_class.SerializeToString, response_deserializer=response_class.FromString)
    try:
        response = invoke(request, timeout=args.timeout)
    except grpc.RpcError as error:
        raise CallFailed(error.code().name, error.details()) from error
    print(to_json(response, args.emit_defaults))


def command_stream(reflection, args):
    path, method, request_class, response_class = resolve_method(reflection, args.method)
    requests = [parse_request(request_class, text) for text in args.json_lines]
    codec = dict(request_serializer=request_class.SerializeToString, response_deserializer=response_class.FromString)
    channel = reflection.channel
    if method.client_streaming and method.server_streaming:
        call = channel.stream_stream(path, **codec)(iter(requests), timeout=args.timeout)
    elif method.server_streaming:
        if len(requests) != 1:
            raise ReflectionError(f"{args.method} takes exactly one request")
        call = channel.unary_stream(path, **codec)(requests[0], timeout=args.timeout)
    else:
        raise ReflectionError(f"{args.method} does not stream responses; use the call command")
    # The request iterator ends after the last message, which half-closes the stream.
    try:
        for response in call:
            print(to_json(response, args.emit_defaults), flush=True)
    except grpc.RpcError as error:
        raise CallFailed(error.code().name, error.details()) from error
    print(f"STATUS {call.code().name}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("address", help="host:port of a server with reflection")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call (default 10)")
    parser.add_argument("--emit-defaults", action="store_true", help="print fields that hold their default value")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list services").set_defaults(run=command_list)
    describe = commands.add_parser("describe", help="describe a service, method, message or enum")
    describe.add_argument("symbol")
    describe.set_defaults(run=command_describe)
    call = commands.add_parser("call", help="call a unary method with one JSON request")
    call.add_argument("method", help="package.Service/Method")
    call.add_argument("json", help="the request as JSON")
    call.set_defaults(run=command_call)
    stream = commands.add_parser("stream", help="call a streaming method: one JSON request per argument")
    stream.add_argument("method", help="package.Service/Method")
    stream.add_argument("json_lines", nargs="+", metavar="JSON", help="a request as JSON")
    stream.set_defaults(run=command_stream)
    args = parser.parse_args(argv)

    # Connect straight to the address, whatever http(s)_proxy says.
    with grpc.insecure_channel(args.address, options=[("grpc.enable_http_proxy", 0)]) as channel:
        try:
            args.run(ReflectionClient(channel, args.timeout), args)
        except CallFailed as error:
            print(f"ERROR {error.code_name}: {error.details}", flush=True)
            return 1
        except (ReflectionError, ValueError) as error:
            print(f"reflect.py: {error}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
