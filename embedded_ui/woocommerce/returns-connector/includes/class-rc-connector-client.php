<?php
/**
 * Signed server-to-server requests from the plugin to the connector.
 *
 * Every request carries X-RC-Shop, X-RC-Timestamp and X-RC-Signature (see RC_Signing); the path
 * signed is the full URL path the connector receives (the connector URL's own path, if any, plus
 * the endpoint), without query. Bodies are JSON, signed byte for byte as sent.
 *
 * Endpoints used (answers are JSON objects/arrays):
 *   GET  /woocommerce/plugin/status                  -> {shop, connected, portal_url, webhooks, last_sync}
 *   GET  /woocommerce/plugin/orders/<id>/returns     -> [{id, rma, state, state_label, refund: {amount, currency,
 *                                                        state, error} | null, can_refund, refund_preview: {total,
 *                                                        currency, lines: [{title, quantity, amount}], shipping,
 *                                                        deductions: [{label, amount}]} | null}]
 *   POST /woocommerce/plugin/refund {"return_id": N} -> {state, amount, currency, error, platform_refund_id}
 * Error answers (4xx/5xx) carry {"error": "<reason>"}; the reason is shown to the merchant verbatim.
 *
 * @package ReturnsConnector
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Client for the connector's plugin API.
 */
final class RC_Connector_Client {

	const TIMEOUT = 15;

	/** Largest answer the plugin reads (bytes). */
	const MAX_BODY = 1048576;

	/**
	 * Connector base URL.
	 *
	 * @var string
	 */
	private $base;

	/**
	 * Shop handle.
	 *
	 * @var string
	 */
	private $shop;

	/**
	 * Plugin secret.
	 *
	 * @var string
	 */
	private $secret;

	/**
	 * New client.
	 *
	 * @param string $base   Connector base URL (https, no trailing slash).
	 * @param string $shop   Shop handle.
	 * @param string $secret Plugin secret.
	 */
	public function __construct( $base, $shop, $secret ) {
		$this->base   = untrailingslashit( $base );
		$this->shop   = $shop;
		$this->secret = $secret;
	}

	/**
	 * The client configured in the settings.
	 *
	 * @return self
	 */
	public static function from_settings() {
		return new self( RC_Settings::connector_url(), RC_Settings::shop(), RC_Settings::secret() );
	}

	/**
	 * Keeps the secret out of var_dump/print_r output.
	 *
	 * @return array
	 */
	public function __debugInfo() {
		return array(
			'base' => $this->base,
			'shop' => $this->shop,
		);
	}

	/**
	 * GET /woocommerce/plugin/status.
	 *
	 * @return array|WP_Error
	 */
	public function status() {
		return $this->request( 'GET', '/woocommerce/plugin/status' );
	}

	/**
	 * GET /woocommerce/plugin/orders/<id>/returns.
	 *
	 * @param int $order_id WooCommerce order id.
	 * @return array|WP_Error List of returns.
	 */
	public function order_returns( $order_id ) {
		return $this->request( 'GET', '/woocommerce/plugin/orders/' . absint( $order_id ) . '/returns' );
	}

	/**
	 * POST /woocommerce/plugin/refund {"return_id": N} (plus "manual": true to record a refund paid by hand).
	 *
	 * @param int  $return_id The connector's return id.
	 * @param bool $manual    Record it without the payment gateway (after the gateway could not refund).
	 * @return array|WP_Error
	 */
	public function refund( $return_id, $manual = false ) {
		$body = array( 'return_id' => absint( $return_id ) );
		if ( $manual ) {
			// Recorded in WooCommerce without the gateway; the merchant pays the customer back.
			$body['manual'] = true;
		}
		return $this->request( 'POST', '/woocommerce/plugin/refund', $body );
	}

	/**
	 * One signed request; the decoded JSON answer on 2xx, otherwise a WP_Error whose message is the
	 * connector's `error` (verbatim) or a description of what went wrong.
	 *
	 * @param string     $method HTTP method.
	 * @param string     $path   Endpoint path (starts with /).
	 * @param array|null $json   Body, sent as JSON.
	 * @return array|WP_Error
	 */
	public function request( $method, $path, $json = null ) {
		if ( '' === $this->shop || '' === $this->secret ) {
			return new WP_Error( 'rc_not_connected', __( 'The store is not connected to the Returns Connector yet.', 'returns-connector' ) );
		}
		$body        = null === $json ? '' : (string) wp_json_encode( $json );
		$base_path   = (string) wp_parse_url( $this->base, PHP_URL_PATH );
		$signed_path = untrailingslashit( $base_path ) . $path;
		$headers     = RC_Signing::request_headers( $this->secret, $this->shop, $method, $signed_path, $body );

		$headers['Accept'] = 'application/json';
		if ( null !== $json ) {
			$headers['Content-Type'] = 'application/json';
		}
		$response = wp_remote_request(
			$this->base . $path,
			array(
				'method'              => $method,
				'headers'             => $headers,
				'body'                => null === $json ? null : $body,
				'timeout'             => self::TIMEOUT,
				'sslverify'           => true,
				'redirection'         => 0,
				'limit_response_size' => self::MAX_BODY,
				'user-agent'          => 'ReturnsConnector-WordPress/' . ( defined( 'RC_VERSION' ) ? RC_VERSION : '0' ) . '; ' . home_url( '/' ),
			)
		);
		if ( is_wp_error( $response ) ) {
			return new WP_Error(
				'rc_unreachable',
				/* translators: %s: the network error */
				sprintf( __( 'The Returns Connector could not be reached: %s', 'returns-connector' ), $response->get_error_message() )
			);
		}
		$code = (int) wp_remote_retrieve_response_code( $response );
		$data = json_decode( (string) wp_remote_retrieve_body( $response ), true );
		if ( $code >= 200 && $code < 300 && is_array( $data ) ) {
			return $data;
		}
		if ( is_array( $data ) && isset( $data['error'] ) && is_string( $data['error'] ) && '' !== $data['error'] ) {
			return new WP_Error( 'rc_refused', $data['error'], array( 'status' => $code, 'body' => $data ) );
		}
		if ( 401 === $code || 403 === $code ) {
			return new WP_Error( 'rc_unauthorized', __( 'The Returns Connector did not accept this store\'s plugin secret. Connect the store again.', 'returns-connector' ), array( 'status' => $code ) );
		}
		return new WP_Error(
			'rc_bad_answer',
			/* translators: %d: HTTP status code */
			sprintf( __( 'The Returns Connector answered with an unexpected response (HTTP %d).', 'returns-connector' ), $code ),
			array( 'status' => $code )
		);
	}
}
