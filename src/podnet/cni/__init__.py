"""The CNI contract: errors, types, versions, result conversion, request parsing, skel."""
