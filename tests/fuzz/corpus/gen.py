#!/usr/bin/env python3
# gen.py — writes the fuzzers' small seed corpus: one folder per target
# (frame/ for fuzz_frame, messages/ for fuzz_messages, ...). Run from this
# directory.
import os
import struct


def msg(t, body):
    return t + struct.pack('>I', len(body) + 4) + body


def startup(code, extra=b''):
    return struct.pack('>II', 8 + len(extra), code) + extra


err = b'SERROR\0VERROR\0C42P01\0Mrelation "t" does not exist\0P15\0Fparse.c\0L1\0Rfn\0\0'
response = (msg(b'1', b'') + msg(b'2', b'') +
            msg(b'T', b'\0\1a\0' + b'\0' * 6 + b'\0\x17\0\4\xff\xff\xff\xff\0\0') +
            msg(b'D', b'\0\1\0\0\0\0011') + msg(b'C', b'SELECT 1\0') +
            msg(b'E', err) + msg(b'Z', b'I'))
login = (msg(b'R', b'\0\0\0\x0aSCRAM-SHA-256\0\0') + msg(b'R', b'\0\0\0\0') +
         msg(b'S', b'server_version\x0015.4\0') + msg(b'K', b'\0\0\x30\x39\1\2\3\4') +
         msg(b'Z', b'I'))
client = (msg(b'Q', b'SELECT 1\0') + msg(b'P', b's\0SELECT $1\0\0\1\0\0\0\x17') +
          msg(b'S', b''))

frame = {
    'response': b'EZCN\xff\x12\x34' + response,
    'response_small_max': b'EZC1\x02\x00\x07' + response,
    'login': b'ZKRS\xff\xab\xcd' + login,
    'client': b'QPSX\xff\x00\x01' + client,
}
messages = {
    'startup30': startup(3 << 16, b'user\0alice\0database\0db\0\0'),
    'startup32': startup((3 << 16) | 2, b'user\0bob\0_pq_.x\0y\0\0'),
    'ssl': startup(80877103),
    'gssenc': startup(80877104),
    'cancel30': startup(80877102, b'\0\0\x30\x39\1\2\3\4'),
    'cancel32': startup(80877102, b'\0\0\x30\x39' + bytes(range(32))),
    'error': err,
    'rfq': b'T',
    'sasl': b'\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0',
    'parse': b'stmt\0SELECT $1, $2\0\0\2\0\0\0\x17\0\0\0\x19',
}
startup_seeds = {k: messages[k] for k in
                 ('startup30', 'startup32', 'ssl', 'gssenc', 'cancel30', 'cancel32')}
startup_seeds['startup_repeat'] = startup(3 << 16, b'user\0a\0user\0b\0options\0\0\0')
error = {
    'error': err,
    'notice': b'SNOTICE\0VNOTICE\0C00000\0Mhello\0\0',
    'hint': b'SERROR\0C42703\0Mcolumn "c" does not exist\0Hperhaps "d"\0\0',
    'no_code': b'SERROR\0Mno sqlstate\0\0',
    'empty': b'\0',
}
sasl = {
    'plus_first': b'\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0',
    'plus_last': b'\0\0\0\x0aSCRAM-SHA-256\0SCRAM-SHA-256-PLUS\0\0',
    'plain': b'\0\0\0\x0aSCRAM-SHA-256\0\0',
    'only_plus': b'\0\0\0\x0aSCRAM-SHA-256-PLUS\0\0',
    'empty': b'\0\0\0\x0a\0',
}
# fuzz_explain: [SQLSTATE selector][severity selector] message; the selectors
# index 42P01 42703 42704 22P02 42883 3F000 42P07 XX000 and
# (ERROR, ERROR) (ERROR, none) (FEHLER, ERROR) (ERREUR, none).
explain_msgs = [
    (0, 'relation "users" does not exist'),
    (0, 'relation "public.s.t" does not exist'),
    (0, 'relation "a.b.c.d" does not exist'),
    (0, 'missing FROM-clause entry for table "u"'),
    (1, 'column "email" does not exist'),
    (1, 'column "email" of relation "users" does not exist'),
    (1, 'column "" of relation "" does not exist" of relation "users" does not exist'),
    (1, 'column u.e.mail does not exist'),
    (1, 'column a.b.c.d.x.y does not exist'),
    (2, 'type "mood[]" does not exist'),
    (2, 'unrecognized configuration parameter "no_such.param"'),
    (2, 'replication slot "s" does not exist'),
    (3, 'invalid input value for enum mood: "happy"'),
    (3, 'invalid input value for enum public.mood: "a: "b"'),
    (3, 'invalid input value for enum "a.b"."x""y": "v"'),
    (4, 'function f(integer) does not exist'),
    (4, 'procedure app.g(h(text) does not exist'),
    (4, 'function a.b.c.d() does not exist'),
    (4, 'operator does not exist: integer = text'),
    (5, 'schema "we"ird" does not exist'),
    (6, 'relation "users" already exists'),
]
explain = {}
for i, (st, m) in enumerate(explain_msgs):
    explain['m%02d' % i] = bytes([st, i % 4]) + m.encode()

for d, files in (('frame', frame), ('messages', messages), ('startup', startup_seeds),
                 ('error', error), ('sasl', sasl), ('explain', explain)):
    os.makedirs(d, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(d, name), 'wb') as f:
            f.write(data)
