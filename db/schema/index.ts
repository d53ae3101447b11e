export * from "./audit";
export * from "./auth";
export * from "./compute";
export * from "./mail";
export * from "./energy";
export * from "./billing";
export * from "./ingress";
export * from "./notifications";
