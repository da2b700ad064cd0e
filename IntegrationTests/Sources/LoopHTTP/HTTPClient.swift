import SerialLoop
import SerialLoopNet

/// A minimal HTTP/1.1 client on SerialLoop's socket layer: one request per connection
/// (`Connection: close`), body framed by `Content-Length` or by the server closing.
public enum HTTPClient {
    /// Sends `GET target` to `address` and reads the whole response.
    /// - Throws: ``LoopError`` from the socket layer (naming connect/read/write and the errno), or
    ///   ``HTTPClientError`` for a response that is not HTTP/1.x.
    public static func get(_ target: String, from address: SocketAddress, on loop: Loop) async throws -> HTTPResponse {
        let connection = try await TCPConnection.connect(to: address, on: loop)
        defer { try? connection.close() }
        try await connection.write("GET \(target) HTTP/1.1\r\nHost: \(address)\r\nUser-Agent: SerialLoop\r\nConnection: close\r\n\r\n")
        var raw: [UInt8] = []
        while case let chunk = try await connection.read(upToCount: 64 * 1024), !chunk.isEmpty {
            raw += chunk
        }
        return try parseResponse(raw, from: "GET \(target) from \(address)")
    }

    static func parseResponse(_ raw: [UInt8], from request: String) throws(HTTPClientError) -> HTTPResponse {
        guard let headEnd = raw.firstRange(of: [13, 10, 13, 10]) else {
            throw HTTPClientError(request: request, message: "no complete response head in \(raw.count) bytes")
        }
        let lines = String(decoding: raw[..<headEnd.lowerBound], as: UTF8.self).split(separator: "\r\n")
        let statusLine = lines.first?.split(separator: " ", maxSplits: 2) ?? []
        guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/1."), let status = Int(statusLine[1]) else {
            throw HTTPClientError(request: request, message: "bad status line \"\(lines.first ?? "")\"")
        }
        var headers: [(name: String, value: String)] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingSpaces()))
        }
        var response = HTTPResponse(status: status, reason: statusLine.count > 2 ? String(statusLine[2]) : "", headers: headers)
        response.body = Array(raw[headEnd.upperBound...])
        if let length = response.header("Content-Length").flatMap(Int.init), length != response.body.count {
            throw HTTPClientError(request: request, message: "Content-Length \(length) but \(response.body.count) body bytes arrived")
        }
        return response
    }
}

public struct HTTPClientError: Error, CustomStringConvertible {
    public var request: String
    public var message: String
    public var description: String { "\(request): \(message)" }
}
