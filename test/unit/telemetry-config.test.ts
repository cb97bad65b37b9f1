import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import { redactConfig } from '../../src/config/redact.ts';
import { ConfigError } from '../../src/errors.ts';
import { createLogger } from '../../src/ops/logger.ts';
import { startTracing } from '../../src/ops/telemetry.ts';

const servers = { api: { upstreams: [{ url: 'http://127.0.0.1:3001/mcp' }] } };
const telemetryOf = (doc: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) => loadConfig({ document: { servers, ...doc }, env }).config.telemetry;

describe('telemetry configuration: the OTEL_* environment over the telemetry section', () => {
  it('is off unless an exporter or an endpoint is named, and then nothing is started', async () => {
    assert.equal(telemetryOf({}), undefined);
    assert.equal(telemetryOf({ telemetry: { serviceName: 'x', sampler: 'always_on' } }), undefined);
    assert.equal(telemetryOf({}, { OTEL_SERVICE_NAME: 'x', OTEL_TRACES_SAMPLER: 'always_on' }), undefined);
    assert.equal(await startTracing(undefined, createLogger('silent')), undefined);
  });

  it('an endpoint turns OTLP on: protobuf, parent-based sampling, the signal path appended to the base endpoint only', () => {
    assert.deepEqual(telemetryOf({}, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }), {
      exporter: 'otlp',
      url: 'http://collector:4318/v1/traces',
      protocol: 'http/protobuf',
      headers: {},
      serviceName: 'mcp-gateway',
      resourceAttributes: {},
      sampler: 'parentbased_always_on',
      samplerArg: 1,
      exportDelayMs: 5000,
      maxQueueSize: 2048,
    });
    assert.equal(telemetryOf({}, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://b:9999/custom' })?.url, 'http://b:9999/custom');
    assert.equal(telemetryOf({ telemetry: { tracesEndpoint: 'https://c/t' } })?.url, 'https://c/t');
    assert.equal(telemetryOf({ telemetry: { exporter: 'otlp' } })?.url, 'http://localhost:4318/v1/traces');
  });

  it('the environment wins over the file; OTEL_SDK_DISABLED and exporter none turn traces off whatever is set', () => {
    const file = { telemetry: { endpoint: 'http://file:4318', protocol: 'http/protobuf', serviceName: 'from-file', sampler: 'always_on', samplerArg: 0.5, exportDelay: '1s', headers: { 'x-key': 'file' }, resourceAttributes: { a: '1', b: '2' } } };
    const t = telemetryOf(file, {
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://env:4318',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_SERVICE_NAME: 'from-env',
      OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
      OTEL_TRACES_SAMPLER_ARG: '0.25',
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_EXPORTER_OTLP_HEADERS: 'x-key=env%20value',
      OTEL_RESOURCE_ATTRIBUTES: 'b=3,c=4',
    });
    assert.deepEqual(
      { url: t?.url, protocol: t?.protocol, serviceName: t?.serviceName, sampler: t?.sampler, samplerArg: t?.samplerArg, exportDelayMs: t?.exportDelayMs, headers: t?.headers, resourceAttributes: t?.resourceAttributes },
      { url: 'http://env:4318/v1/traces', protocol: 'http/json', serviceName: 'from-env', sampler: 'parentbased_traceidratio', samplerArg: 0.25, exportDelayMs: 100, headers: { 'x-key': 'env value' }, resourceAttributes: { a: '1', b: '3', c: '4' } },
    );
    assert.equal(telemetryOf(file, { OTEL_SDK_DISABLED: 'true' }), undefined);
    assert.equal(telemetryOf(file, { OTEL_TRACES_EXPORTER: 'none' }), undefined);
    assert.equal(telemetryOf({ telemetry: { exporter: 'none', endpoint: 'http://x:4318' } }), undefined);
    // Empty means unset (the OpenTelemetry rule).
    assert.equal(telemetryOf(file, { OTEL_SERVICE_NAME: '' })?.serviceName, 'from-file');
    // MCPGW_* names reach the section like any key.
    assert.equal(telemetryOf({}, { MCPGW_TELEMETRY_ENDPOINT: 'http://m:4318' })?.url, 'http://m:4318/v1/traces');
  });

  it('refuses what it cannot do, naming the variable or key, and never echoing a header value', () => {
    const refused = (env: NodeJS.ProcessEnv, doc: Record<string, unknown> = {}) => {
      try {
        telemetryOf(doc, env);
      } catch (err) {
        assert.ok(err instanceof ConfigError);
        return err.message;
      }
      assert.fail('accepted');
    };
    assert.match(refused({ OTEL_TRACES_EXPORTER: 'zipkin' }), /OTEL_TRACES_EXPORTER/);
    assert.match(refused({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x:4318', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }), /OTEL_EXPORTER_OTLP_PROTOCOL.*http\/protobuf or http\/json/);
    assert.match(refused({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' }), /OTEL_EXPORTER_OTLP_ENDPOINT: not an http\(s\) URL/);
    assert.match(refused({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x:4318', OTEL_TRACES_SAMPLER: 'sometimes' }), /OTEL_TRACES_SAMPLER/);
    assert.match(refused({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x:4318', OTEL_TRACES_SAMPLER_ARG: '2' }), /OTEL_TRACES_SAMPLER_ARG/);
    const headers = refused({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x:4318', OTEL_EXPORTER_OTLP_HEADERS: 'api-key-without-equals-s3cret' });
    assert.match(headers, /OTEL_EXPORTER_OTLP_HEADERS/);
    assert.ok(!headers.includes('s3cret'));
    assert.match(refused({}, { telemetry: { protocol: 'grpc' } }), /telemetry\.protocol/);
    assert.match(refused({}, { telemetry: { sampler: 'sometimes' } }), /telemetry\.sampler/);
    assert.match(refused({}, { telemetry: { endpont: 'http://x' } }), /telemetry\.endpont is not allowed/);
  });

  it('--print-config hides the export headers', () => {
    const { effective } = loadConfig({ document: { servers, telemetry: { endpoint: 'http://x:4318', headers: { 'api-key': 'k-123' } } }, env: {} });
    assert.ok(!JSON.stringify(redactConfig(effective)).includes('k-123'));
  });
});
