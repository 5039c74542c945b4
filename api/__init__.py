"""The vocabulary every layer and both ends of the wire share: errors, request and result types, protobuf conversion."""
