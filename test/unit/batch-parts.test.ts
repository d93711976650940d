import { describe, expect, it } from 'vitest';
import { decodePartAnswers, MAX_PARTS, partsHeader, splitParts } from '../../shared/batch-parts.js';
import { AppError } from '../../shared/errors.js';

describe('batch parts (several batches in one request to a worker)', () => {
  it('cuts the body at the lengths the header gives, empty batches included', () => {
    const parts = ['[1]', '', '[{"id":"é","tenant":"t"}]'].map((text) => Buffer.from(text));
    const header = partsHeader(parts);
    expect(header).toBe(`3,0,${parts[2]!.length}`);
    expect(splitParts(header, Buffer.concat(parts)).map(String)).toEqual(parts.map(String));
  });

  it.each([
    ['no header', undefined, 'abc'],
    ['a header that is not lengths', '3,x', 'abc'],
    ['a negative length', '-3', 'abc'],
    ['two headers', ['3', '3'], 'abc'],
    ['lengths short of the body', '2', 'abc'],
    ['lengths past the body', '2,2', 'abc'],
    ['too many batches', Array.from({ length: MAX_PARTS + 1 }, () => '0').join(','), ''],
  ])('refuses %s with a 400 invalid_batch', (_name, header, body) => {
    let error: unknown;
    try {
      splitParts(header as string | string[] | undefined, Buffer.from(body));
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe('invalid_batch');
  });

  it('reads one answer per batch, each as the body it would have had alone', () => {
    const answers = decodePartAnswers(Buffer.from('{"answers":[[200,{"accepted":3}],[400,{"error":{"code":"invalid_json","message":"m","id":"e"}}]]}'), 2);
    expect(answers?.map((answer) => [answer.status, String(answer.body)])).toEqual([
      [200, '{"accepted":3}'],
      [400, '{"error":{"code":"invalid_json","message":"m","id":"e"}}'],
    ]);
  });

  it.each([
    ['not JSON', '<html>'],
    ['no answers', '{"error":{"code":"not_found"}}'],
    ['fewer answers than batches', '{"answers":[[200,{"accepted":1}]]}'],
    ['an answer without a status', '{"answers":[[{"accepted":1}],[200,{"accepted":1}]]}'],
    ['a body that is not an object', '{"answers":[[200,1],[200,{"accepted":1}]]}'],
  ])('says so when the answer is %s (the coordinator then sends each batch alone)', (_name, text) => {
    expect(decodePartAnswers(Buffer.from(text), 2)).toBeUndefined();
  });
});
