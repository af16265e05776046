"""The generated protobuf and gRPC modules, loaded from the package's gen folder.

protoc's Python generator writes modules that import each other by their proto
package (``from sentinel.registry.v1 import worker_pb2``), and it has no option
to prefix those imports. So the folder that holds ``sentinel/`` must itself be
on ``sys.path``. Rather than asking users for a second PYTHONPATH entry, the
package adds its own ``gen`` folder (at the end, so it shadows nothing) the
first time it is imported. ``gen`` is written by ``buf generate`` only (its
``clean: true`` empties it first), so nothing hand-written may live there.

This is the one module that imports generated code by path; the rest of the
package imports the names below.
"""

import os
import sys

GEN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen")

if GEN_DIR not in sys.path:
    sys.path.append(GEN_DIR)

from sentinel.registry.v1 import registry_service_pb2 as service_pb2  # noqa: E402
from sentinel.registry.v1 import registry_service_pb2_grpc as service_grpc  # noqa: E402
from sentinel.registry.v1 import worker_pb2  # noqa: E402

__all__ = ["GEN_DIR", "service_pb2", "service_grpc", "worker_pb2"]
