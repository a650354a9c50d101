<?php
/**
 * The [returns_portal] shortcode and the optional footer link.
 *
 * [returns_portal label="Start a return" class="button"]: a link to the portal. For a signed-in
 * customer it points to the plugin's signed route (My Account > Returns), which opens the portal
 * with a fresh customer token; for anyone else to the store's public portal URL. Prints nothing
 * while the store is not connected.
 *
 * @package ReturnsConnector
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Shortcode and footer link.
 */
final class RC_Shortcode {

	/**
	 * Hooks.
	 */
	public static function init() {
		add_shortcode( 'returns_portal', array( __CLASS__, 'render' ) );
		add_action( 'wp_footer', array( __CLASS__, 'footer_link' ) );
	}

	/**
	 * Where a Returns link points for the current visitor ('' when there is nowhere to go).
	 *
	 * @return string
	 */
	public static function link_url() {
		if ( ! RC_Settings::is_configured() ) {
			return '';
		}
		if ( is_user_logged_in() ) {
			return RC_Account::portal_route();
		}
		return RC_Settings::portal_url();
	}

	/**
	 * The shortcode.
	 *
	 * @param array|string $atts Attributes: label, class.
	 * @return string
	 */
	public static function render( $atts ) {
		$atts = shortcode_atts(
			array(
				'label' => __( 'Start a return', 'returns-connector' ),
				'class' => 'button',
			),
			$atts,
			'returns_portal'
		);
		$url = self::link_url();
		if ( '' === $url ) {
			return '';
		}
		$classes = implode( ' ', array_map( 'sanitize_html_class', preg_split( '/\s+/', trim( (string) $atts['class'] ) ) ) );
		return '<a class="rc-returns-portal ' . esc_attr( $classes ) . '" href="' . esc_url( $url ) . '" rel="nofollow">' . esc_html( (string) $atts['label'] ) . '</a>';
	}

	/**
	 * The footer link, when switched on in the settings.
	 */
	public static function footer_link() {
		if ( ! RC_Settings::footer_link() ) {
			return;
		}
		$url = self::link_url();
		if ( '' === $url ) {
			return;
		}
		echo '<p class="rc-returns-footer" style="text-align:center"><a href="' . esc_url( $url ) . '" rel="nofollow">' . esc_html__( 'Returns', 'returns-connector' ) . '</a></p>';
	}
}
