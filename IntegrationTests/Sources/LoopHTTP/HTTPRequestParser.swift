/// An incremental HTTP/1.x request parser: feed it bytes as they arrive (one at a time is fine),
/// take complete requests out. Pipelined requests come out one after another.
///
/// Supports `Content-Length` bodies; `Transfer-Encoding` is answered with 501.
/// - Complexity: each byte is scanned a bounded number of times, however it is split into reads
///   (a slow client sending one byte per packet costs O(n), not O(n²)).
public struct HTTPRequestParser {
    /// Largest request line plus headers accepted (431 beyond).
    public var maxHeaderBytes = 64 * 1024
    /// Largest body accepted (413 beyond).
    public var maxBodyBytes = 64 * 1024 * 1024

    private var buffer: [UInt8] = []
    /// Start of the first unconsumed byte in `buffer`.
    private var start = 0
    /// How far `buffer` has been searched for the end of the header section without finding it.
    private var scanned = 0
    /// The current request's head, once parsed, while its body is still arriving.
    private var pending: (request: HTTPRequest, bodyLength: Int)?
    /// The pending request sent `Expect: 100-continue` and has not been told to go on yet.
    private var expectsContinue = false

    public init() {}

    /// Whether part of a request has arrived (a connection closed now would cut it off).
    public var hasPartialRequest: Bool { pending != nil || start < buffer.count }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        if start > 0 && start >= buffer.count / 2 {
            buffer.removeSubrange(0..<start)      // compact: keep the buffer from growing
            scanned -= start
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    public mutating func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    /// The next complete request, or `nil` until more bytes arrive.
    public mutating func nextRequest() throws(HTTPParseError) -> HTTPRequest? {
        if pending == nil {
            guard let headEnd = findHeaderEnd() else {
                if buffer.count - start > maxHeaderBytes {
                    throw HTTPParseError(status: 431, message: "request head larger than \(maxHeaderBytes) bytes")
                }
                return nil
            }
            let head = String(decoding: buffer[start..<headEnd], as: UTF8.self)
            start = headEnd + 4
            scanned = start
            let (request, bodyLength) = try parseHead(head)
            pending = (request, bodyLength)
            expectsContinue = bodyLength > 0 && request.minorVersion >= 1
                && request.header("Expect")?.lowercased() == "100-continue"
        }
        guard let (request, bodyLength) = pending, buffer.count - start >= bodyLength else { return nil }
        var complete = request
        complete.body = Array(buffer[start..<(start + bodyLength)])
        start += bodyLength
        scanned = start
        pending = nil
        expectsContinue = false
        return complete
    }

    /// Whether the request whose body is still arriving asked for `100 Continue` (RFC 9110
    /// §10.1.1) and has not had it: returns `true` once, then `false`. Clients such as curl wait
    /// for it (a second, by default) before sending a large body.
    public mutating func takeContinueRequest() -> Bool {
        defer { expectsContinue = false }
        return expectsContinue && pending != nil
    }

    /// Index of the `\r\n\r\n` ending the head, searching only bytes not searched before.
    private mutating func findHeaderEnd() -> Int? {
        var index = max(start, scanned - 3)
        let end = buffer.count - 3
        while index < end {
            if buffer[index] == 13 && buffer[index + 1] == 10 && buffer[index + 2] == 13 && buffer[index + 3] == 10 {
                return index
            }
            index += 1
        }
        scanned = max(scanned, buffer.count)
        return nil
    }

    private func parseHead(_ head: String) throws(HTTPParseError) -> (HTTPRequest, Int) {
        let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let requestLine = lines[0].split(separator: " ", omittingEmptySubsequences: false)
        guard requestLine.count == 3, !requestLine[0].isEmpty, requestLine[1].first == "/" || requestLine[1] == "*" else {
            throw HTTPParseError(status: 400, message: "malformed request line \"\(lines[0].prefix(100))\"")
        }
        let minorVersion: Int
        switch requestLine[2] {
        case "HTTP/1.1": minorVersion = 1
        case "HTTP/1.0": minorVersion = 0
        default: throw HTTPParseError(status: 505, message: "unsupported version \"\(requestLine[2].prefix(20))\"")
        }
        var headers: [(name: String, value: String)] = []
        var contentLength: Int?
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex,
                  line.first != " ", line.first != "\t" else {
                throw HTTPParseError(status: 400, message: "malformed header line \"\(line.prefix(100))\"")
            }
            let name = String(line[..<colon])
            let value = line[line.index(after: colon)...].trimmingSpaces()
            switch name.lowercased() {
            case "content-length":
                guard let length = Int(value), length >= 0, value.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else {
                    throw HTTPParseError(status: 400, message: "bad Content-Length \"\(value.prefix(30))\"")
                }
                if let contentLength, contentLength != length {
                    throw HTTPParseError(status: 400, message: "conflicting Content-Length headers")
                }
                guard length <= maxBodyBytes else {
                    throw HTTPParseError(status: 413, message: "body of \(length) bytes is over the \(maxBodyBytes)-byte limit")
                }
                contentLength = length
            case "transfer-encoding":
                throw HTTPParseError(status: 501, message: "Transfer-Encoding \"\(value.prefix(30))\" is not supported; send Content-Length")
            default:
                break
            }
            headers.append((name, value))
        }
        let request = HTTPRequest(method: String(requestLine[0]), target: String(requestLine[1]),
                                  minorVersion: minorVersion, headers: headers, body: [])
        return (request, contentLength ?? 0)
    }
}
