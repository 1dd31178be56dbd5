// The gRPC status codes Google's APIs answer with (google.rpc.Code), by name: the thin REST clients
// map their JSON error bodies to them, as google-gax does for the client libraries.

export const GRPC = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

export type GrpcName = keyof typeof GRPC;

/** Each code's name, by number. */
export const GRPC_NAMES = Object.keys(GRPC) as GrpcName[];
