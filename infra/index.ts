/** Entry point of the Pulumi program; `Pulumi.yaml` describes the stack config it reads. */
import { readStackConfig } from "./config.ts";
import { deployStack } from "./stack.ts";

const outputs = deployStack(readStackConfig());

export const gatewayUrl = outputs.gatewayUrl;
export const authImage = outputs.images.auth;
export const gatewayImage = outputs.images.gateway;
export const converterImage = outputs.images.converter;
export const notifyImage = outputs.images.notify;
