import type { FastifyRequest } from 'fastify';

/** The path parameters of an MCP route (`/mcp/:server`, and the 2024-11-05 routes under it). */
export type McpParams = { server: string };

/** A request on an MCP route, its body the raw bytes (parsed by the door that takes it). */
export type McpRequest = FastifyRequest<{ Params: McpParams; Body: Buffer | undefined }>;
