"""The authentication handshake of Listener and Client (Python 3.11's wire format).

Each side proves to the other that it holds the same authkey without
sending it. The side that challenges sends `#CHALLENGE#` followed by
MESSAGE_LENGTH random bytes; the other answers with the HMAC-MD5 of those
bytes under the authkey; the challenger replies `#WELCOME#` or `#FAILURE#`.
A listener challenges first and then answers the client's challenge; a
client does the same in the other order. Only raw byte messages cross
before both succeed: nothing is unpickled from an unauthenticated peer.

The bytes and the AuthenticationError phrases ('digest received was
wrong', 'digest sent was rejected') are the stdlib's, so a stock python3
process is a peer either way.
"""

import os

from .context import AuthenticationError

__all__ = []  # private: reached through multiprocessing.connection

MESSAGE_LENGTH = 20

CHALLENGE = b'#CHALLENGE#'
WELCOME = b'#WELCOME#'
FAILURE = b'#FAILURE#'

# No message of the handshake is longer; a peer that sends more is not one.
_LONGEST_REPLY = 256


def _proof(authkey, nonce):
    """What a holder of authkey answers to the challenge `nonce`."""
    # hmac (with hashlib and libcrypto) is loaded on the first handshake, not
    # by every process that imports multiprocessing.connection.
    import hmac
    return hmac.new(authkey, nonce, 'md5').digest()


def _same_digest(received, expected):
    import hmac
    return hmac.compare_digest(received, expected)


def _key(authkey):
    # Checked before anything is sent or read.
    if isinstance(authkey, bytes):
        return authkey
    raise ValueError('Authkey must be bytes, not {0!s}'.format(type(authkey)))


def deliver_challenge(connection, authkey):
    """Challenge the peer; AuthenticationError unless it proves it has authkey."""
    nonce = os.urandom(MESSAGE_LENGTH)
    expected = _proof(_key(authkey), nonce)
    connection.send_bytes(CHALLENGE + nonce)
    passed = _same_digest(connection.recv_bytes(_LONGEST_REPLY), expected)
    connection.send_bytes(WELCOME if passed else FAILURE)
    if not passed:
        raise AuthenticationError('digest received was wrong')


def answer_challenge(connection, authkey):
    """Answer the peer's challenge; AuthenticationError if it rejects the answer."""
    authkey = _key(authkey)
    challenge = connection.recv_bytes(_LONGEST_REPLY)
    tag, nonce = challenge[:len(CHALLENGE)], challenge[len(CHALLENGE):]
    if tag != CHALLENGE:
        raise AuthenticationError('expected an authentication challenge, got %r'
                                  % (challenge[:32],))
    connection.send_bytes(_proof(authkey, nonce))
    verdict = connection.recv_bytes(_LONGEST_REPLY)
    if verdict != WELCOME:
        raise AuthenticationError('digest sent was rejected')


def _authenticated(connection, authkey, challenger_first):
    """`connection` once both directions of the handshake passed (the
    listener's side challenges first); closed if either fails."""
    steps = ((deliver_challenge, answer_challenge) if challenger_first
             else (answer_challenge, deliver_challenge))
    try:
        for step in steps:
            step(connection, authkey)
    except BaseException:
        connection.close()
        raise
    return connection
