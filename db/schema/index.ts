export * from "./audit";
export * from "./auth";
export * from "./compute";
export * from "./mail";
export * from "./billing";
