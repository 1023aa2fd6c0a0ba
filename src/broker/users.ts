/**
 * Users, password hashes and per-vhost permissions, RabbitMQ style: a password is stored as
 * base64(salt(4) + sha256(salt + password)) (rabbit_password_hashing_sha256), and a
 * permission is three regular expressions (configure, write, read) per vhost.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export interface UserRecord {
  name: string;
  passwordHash: string;
  tags: string[];
}

export interface PermissionRecord {
  user: string;
  vhost: string;
  configure: string;
  write: string;
  read: string;
}

export function hashPassword(password: string, salt: Buffer = randomBytes(4)): string {
  const digest = createHash('sha256').update(salt).update(password, 'utf8').digest();
  return Buffer.concat([salt, digest]).toString('base64');
}

export function checkPassword(password: string, stored: string): boolean {
  const raw = Buffer.from(stored, 'base64');
  if (raw.length !== 36) return false;
  const expect = Buffer.from(hashPassword(password, raw.subarray(0, 4)), 'base64');
  return timingSafeEqual(raw, expect);
}

const regexCache = new Map<string, RegExp>();

/** Whether `name` is allowed by a permission pattern ('' allows nothing, as in RabbitMQ). */
export function permits(pattern: string, name: string): boolean {
  if (pattern === '') return false;
  let re = regexCache.get(pattern);
  if (re === undefined) {
    re = new RegExp(`^(?:${pattern})$`);
    regexCache.set(pattern, re);
  }
  return re.test(name);
}
