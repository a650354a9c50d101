<?php
/**
 * What the plugin and the connector sign for each other, with the store's plugin secret.
 *
 * The Python twin is connector/platforms/woocommerce/signing.py; both are checked against
 * tests/fixtures/woocommerce/plugin_vectors.json, so they produce byte-identical tokens and signatures.
 *
 * Customer token (plugin -> portal, through the shopper's browser; short-lived, single-use):
 *     token = b64url(payload_json) . "." . b64url(HMAC-SHA256(secret, b64url(payload_json)))
 *     payload keys in this order: shop (handle), customer (WP user id, int), email, order
 *     (WooCommerce order id, int, or null), exp (unix seconds), nonce (string, 8..64 chars).
 *     b64url without padding; payload_json compact, slashes and Unicode unescaped (as Python's
 *     json.dumps(separators=(",", ":"), ensure_ascii=False)).
 *
 * Signed request (plugin -> connector, server to server):
 *     X-RC-Shop: handle, X-RC-Timestamp: unix seconds,
 *     X-RC-Signature: hex(HMAC-SHA256(secret, timestamp \n METHOD \n path \n hex(SHA-256(raw body))))
 *
 * Pure PHP (no WordPress call), so tests/run.php can test it without WordPress.
 *
 * @package ReturnsConnector
 */

if ( ! defined( 'ABSPATH' ) && ! defined( 'RC_TESTING' ) ) {
	exit;
}

/**
 * Customer tokens and request signatures.
 */
final class RC_Signing {

	/** Seconds a customer token lives (the connector accepts at most this plus a minute of skew). */
	const TOKEN_LIFETIME = 300;

	/**
	 * Base64url without padding.
	 *
	 * @param string $data Raw bytes.
	 * @return string
	 */
	public static function b64url( $data ) {
		return rtrim( strtr( base64_encode( $data ), '+/', '-_' ), '=' );
	}

	/**
	 * The compact JSON of the token payload, keys in the contract's order.
	 *
	 * @param string   $shop     Shop handle at the connector.
	 * @param int      $customer WordPress user id.
	 * @param string   $email    The customer's email.
	 * @param int|null $order    WooCommerce order id, or null for all the customer's orders.
	 * @param int      $exp      Expiry, unix seconds.
	 * @param string   $nonce    Random, single-use.
	 * @return string
	 * @throws RuntimeException When the values cannot be encoded (invalid UTF-8).
	 */
	public static function token_payload( $shop, $customer, $email, $order, $exp, $nonce ) {
		$payload = array(
			'shop'     => (string) $shop,
			'customer' => (int) $customer,
			'email'    => (string) $email,
			'order'    => null === $order ? null : (int) $order,
			'exp'      => (int) $exp,
			'nonce'    => (string) $nonce,
		);
		// JSON_UNESCAPED_LINE_TERMINATORS: Python leaves U+2028/U+2029 raw too.
		$json = json_encode( $payload, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_LINE_TERMINATORS );
		if ( false === $json ) {
			throw new RuntimeException( 'customer token payload is not encodable: ' . json_last_error_msg() );
		}
		return $json;
	}

	/**
	 * A signed customer token.
	 *
	 * @param string   $secret   The store's plugin secret.
	 * @param string   $shop     Shop handle.
	 * @param int      $customer WordPress user id.
	 * @param string   $email    Email.
	 * @param int|null $order    Order id or null.
	 * @param int      $exp      Expiry, unix seconds.
	 * @param string   $nonce    Random nonce.
	 * @return string
	 */
	public static function customer_token( $secret, $shop, $customer, $email, $order, $exp, $nonce ) {
		$body = self::b64url( self::token_payload( $shop, $customer, $email, $order, $exp, $nonce ) );
		return $body . '.' . self::b64url( hash_hmac( 'sha256', $body, $secret, true ) );
	}

	/**
	 * A fresh token for now: expires in TOKEN_LIFETIME seconds, nonce from random_bytes.
	 *
	 * @param string   $secret   Plugin secret.
	 * @param string   $shop     Shop handle.
	 * @param int      $customer WordPress user id.
	 * @param string   $email    Email.
	 * @param int|null $order    Order id or null.
	 * @return string
	 */
	public static function fresh_customer_token( $secret, $shop, $customer, $email, $order ) {
		$nonce = self::b64url( random_bytes( 16 ) ); // 22 characters.
		return self::customer_token( $secret, $shop, $customer, $email, $order, time() + self::TOKEN_LIFETIME, $nonce );
	}

	/**
	 * The message a request signature covers.
	 *
	 * @param string $timestamp Unix seconds, as sent in X-RC-Timestamp.
	 * @param string $method    HTTP method.
	 * @param string $path      URL path without query, as the connector sees it.
	 * @param string $body      Raw body bytes ('' for none).
	 * @return string
	 */
	public static function request_message( $timestamp, $method, $path, $body ) {
		return $timestamp . "\n" . strtoupper( $method ) . "\n" . $path . "\n" . hash( 'sha256', $body );
	}

	/**
	 * Hex HMAC-SHA256 of the request message.
	 *
	 * @param string $secret    Plugin secret.
	 * @param string $timestamp Unix seconds.
	 * @param string $method    HTTP method.
	 * @param string $path      URL path.
	 * @param string $body      Raw body.
	 * @return string
	 */
	public static function request_signature( $secret, $timestamp, $method, $path, $body ) {
		return hash_hmac( 'sha256', self::request_message( $timestamp, $method, $path, $body ), $secret );
	}

	/**
	 * The three headers of a signed request.
	 *
	 * @param string $secret    Plugin secret.
	 * @param string $shop      Shop handle.
	 * @param string $method    HTTP method.
	 * @param string $path      URL path.
	 * @param string $body      Raw body.
	 * @param int    $timestamp Unix seconds (defaults to now).
	 * @return array<string,string>
	 */
	public static function request_headers( $secret, $shop, $method, $path, $body, $timestamp = null ) {
		$timestamp = (string) ( null === $timestamp ? time() : (int) $timestamp );
		return array(
			'X-RC-Shop'      => (string) $shop,
			'X-RC-Timestamp' => $timestamp,
			'X-RC-Signature' => self::request_signature( $secret, $timestamp, $method, $path, $body ),
		);
	}
}
